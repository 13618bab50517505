//! Connect tokens and rate counters in DynamoDB.

use super::*;

#[async_trait]
impl TokenStore for DynamoDbStore {
    async fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(&format!("{TOKEN_PREFIX}{hash}"))),
            ("sk".to_owned(), s("token")),
            ("token_user".to_owned(), s(&record.identity.user_id)),
            (TTL_ATTRIBUTE.to_owned(), n(record.expires_at)),
            (TOKEN_ISSUED.to_owned(), n(record.issued_at)),
        ]);
        if !record.identity.groups.is_empty() {
            item.insert(
                "token_groups".to_owned(),
                AttributeValue::L(record.identity.groups.iter().map(|g| s(g)).collect()),
            );
        }
        if let Some(channel) = &record.channel {
            item.insert("token_channel".to_owned(), s(channel.as_str()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn purge_expired_tokens(&self, now: i64, dry_run: bool) -> Result<usize, StoreError> {
        let mut found = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :token) AND #exp <= :now")
                .projection_expression("pk, sk")
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":token", s(TOKEN_PREFIX))
                .expression_attribute_values(":now", n(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            let keys: Vec<Item> = out.items.unwrap_or_default();
            found += keys.len();
            if !dry_run && !keys.is_empty() {
                self.delete_keys(keys).await?;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("{TOKEN_PREFIX}{hash}")))
            .key("sk", s("token"))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => return Ok(None),
            Err(e) => return Err(sdk_error(e)),
        };
        let user_id = get_s(&item, "token_user").ok_or_else(|| StoreError::Corrupt("token without user".into()))?;
        let groups = match item.get("token_groups") {
            Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        };
        let channel = get_s(&item, "token_channel").map(ChannelName::new).transpose().map_err(corrupt)?;
        Ok(Some(TokenRecord {
            identity: Identity { user_id: user_id.to_owned(), groups },
            channel,
            expires_at: get_n(&item, TTL_ATTRIBUTE)?,
            // A token stored before issue times were kept counts as issued at once.
            issued_at: get_n(&item, TOKEN_ISSUED).unwrap_or(0),
        }))
    }
}

#[async_trait]
impl CounterStore for DynamoDbStore {
    async fn increment(&self, key: &str, expires_at: i64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("rate#{key}")))
            .key("sk", s("rate"))
            .update_expression("ADD #n :one SET #exp = if_not_exists(#exp, :exp)")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let attrs = out.attributes.unwrap_or_default();
        get_n(&attrs, "n").map(|v| v.max(0) as u64)
    }
}
