//! Channel streams in DynamoDB: a partition per channel (`hist#<channel>`), its head item and
//! one item per kept message.

use super::*;

/// Where a channel's stream lives: `hist#<channel>`, its head item and one item per kept message.
fn stream_pk(channel: &ChannelName) -> AttributeValue {
    s(&format!("{HISTORY_PREFIX}{channel}"))
}

/// A kept message's sort key: zero-padded, so keys sort as numbers.
fn entry_sk(seq: u64) -> String {
    format!("{ENTRY_PREFIX}{seq:020}")
}

#[async_trait]
impl HistoryStore for DynamoDbStore {
    async fn append(
        &self,
        channel: &ChannelName,
        payload: &str,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Position, StoreError> {
        // The next number: one atomic ADD on the stream's head (created with its epoch by the
        // first send), then the message under it.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", stream_pk(channel))
            .key("sk", s(HEAD_SK))
            .update_expression("ADD #seq :one SET #epoch = if_not_exists(#epoch, :epoch), #exp = :exp, head_at = :at")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#epoch", "epoch")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":epoch", s(&crate::store::history::new_epoch()))
            .expression_attribute_values(":exp", n(now_ms.div_euclid(1000) + STREAM_TTL_SECS))
            .expression_attribute_values(":at", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let head = out.attributes.unwrap_or_default();
        let seq = get_n(&head, "seq")?.max(0) as u64;
        let epoch = get_s(&head, "epoch").ok_or_else(|| StoreError::Corrupt("stream without epoch".into()))?.to_owned();
        let keep_until = now_ms.saturating_add(rule.window.as_millis() as i64);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", stream_pk(channel))
            .item("sk", s(&entry_sk(seq)))
            .item("payload", s(payload))
            .item("keep_until", n(keep_until))
            .item(TTL_ATTRIBUTE, n(keep_until.div_euclid(1000) + 1))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(Position { seq, epoch })
    }

    async fn recent(
        &self,
        channel: &ChannelName,
        after: u64,
        rule: HistoryRule,
        now_ms: i64,
    ) -> Result<Recent, StoreError> {
        // The head and the newest kept messages above `after`, in one round trip.
        let head = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", stream_pk(channel))
            .key("sk", s(HEAD_SK))
            .consistent_read(true)
            .send();
        let entries = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .filter_expression("keep_until > :now")
            .expression_attribute_values(":pk", stream_pk(channel))
            .expression_attribute_values(":from", s(&entry_sk(after.saturating_add(1))))
            .expression_attribute_values(":to", s(&entry_sk(u64::MAX)))
            .expression_attribute_values(":now", n(now_ms))
            .scan_index_forward(false)
            .limit(rule.size.max(1) as i32)
            .consistent_read(true)
            .send();
        let (head, entries) = futures::join!(head, entries);
        let Some(head) = head.map_err(sdk_error)?.item.filter(|i| !i.is_empty()) else {
            return Ok(Recent::default());
        };
        let mut kept = Vec::new();
        for item in entries.map_err(sdk_error)?.items.unwrap_or_default() {
            let seq = get_s(&item, "sk")
                .and_then(|sk| sk.strip_prefix(ENTRY_PREFIX))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Corrupt("kept message without a number".into()))?;
            let payload =
                get_s(&item, "payload").ok_or_else(|| StoreError::Corrupt("kept message without payload".into()))?;
            kept.push(Entry { seq, payload: payload.to_owned() });
        }
        kept.reverse();
        Ok(Recent {
            epoch: get_s(&head, "epoch").map(str::to_owned),
            head: get_n(&head, "seq")?.max(0) as u64,
            head_at: get_n(&head, "head_at").unwrap_or(0),
            entries: kept,
        })
    }
}
