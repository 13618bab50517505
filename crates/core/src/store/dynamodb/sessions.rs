//! Sessions, memberships and users' connection slots in DynamoDB.

use super::*;

#[async_trait]
impl SessionStore for DynamoDbStore {
    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.open_session(session, None, false).await
    }

    async fn get_session(&self, id: &ConnectionId, now: i64) -> Result<Option<Session>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let session = out.item.as_ref().map(session_from).transpose()?;
        Ok(session.filter(|s| !s.is_expired(now)))
    }

    async fn remove_session(&self, id: &ConnectionId) -> Result<Option<Removed>, StoreError> {
        // The session item goes first and says what else there is: the channels joined after
        // `$connect` (their own items) and whether it holds a user's connection slot. A
        // connection in only its connect channel, without a slot, is one call.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = out.attributes.filter(|a| !a.is_empty()) else {
            // No session: clear whatever a failed removal left of the connection.
            let found = self.items_of(id, false).await?;
            self.delete_keys(found.keys).await?;
            return Ok(None);
        };
        let session = session_from(&item)?;
        let written_with_set = item.contains_key(SLOT);
        let memberships = async {
            if !written_with_set {
                let found = self.items_of(id, false).await?;
                let mut channels = found.channels;
                channels.extend(get_s(&item, CHANNEL).map(str::to_owned));
                self.delete_keys(found.keys).await?;
                return Ok(channels);
            }
            let inline = get_s(&item, CHANNEL);
            let keys: Vec<Item> = match item.get(CHANNELS) {
                Some(AttributeValue::Ss(set)) => set
                    .iter()
                    .filter(|name| Some(name.as_str()) != inline)
                    .map(|name| {
                        HashMap::from([
                            ("pk".to_owned(), conn_pk(id)),
                            ("sk".to_owned(), s(&format!("{CHAN_PREFIX}{name}"))),
                        ])
                    })
                    .collect(),
                _ => Vec::new(),
            };
            self.delete_keys(keys).await?;
            Ok(match item.get(CHANNELS) {
                Some(AttributeValue::Ss(set)) => set.clone(),
                _ => Vec::new(),
            })
        };
        let holds_slot = matches!(item.get(SLOT), Some(AttributeValue::Bool(true))) || !written_with_set;
        let slot = async {
            match session.user_id() {
                Some(user) if holds_slot => self.release_slot(user, id).await,
                _ => Ok(()),
            }
        };
        let (channels, ()) = futures::try_join!(memberships, slot)?;
        Ok(Some(Removed::of(&session, channel_names(channels)?)))
    }

    async fn remove_sessions(&self, ids: &[ConnectionId]) -> Result<Vec<Removed>, StoreError> {
        // Keys of all the connections' items (a few queries at a time), then 25-item batch deletes.
        let found: Vec<(ConnectionId, ConnectionItems)> = futures::stream::iter(ids.to_vec())
            .map(|id| async move { Ok::<_, StoreError>((id.clone(), self.items_of(&id, false).await?)) })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut removed = Vec::new();
        let mut users: Vec<(String, ConnectionId)> = Vec::new();
        let mut keys = Vec::new();
        for (id, items) in found {
            if items.keys.is_empty() {
                continue;
            }
            let mut channels = channel_names(items.channels)?;
            channels.sort_unstable();
            channels.dedup();
            removed.push(Removed { connection_id: id.clone(), user_id: items.user_id.clone(), channels });
            users.extend(items.user_id.map(|user| (user, id)));
            keys.extend(items.keys);
        }
        self.delete_keys(keys).await?;
        futures::stream::iter(users)
            .map(|(user, id)| async move { self.release_slot(&user, &id).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(removed)
    }

    async fn join(&self, session: &Session, channel: &ChannelName, max: usize) -> Result<Joined, StoreError> {
        // Into the session's channel set first, conditionally on the cap and on not being there
        // yet, so no membership ever exists beyond it; then the membership's own item.
        let id = &session.connection_id;
        let set = AttributeValue::Ss(vec![channel.as_str().to_owned()]);
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #cs :set")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#cs) OR (size(#cs) < :max AND NOT contains(#cs, :name)))",
            )
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_values(":set", set)
            .expression_attribute_values(":name", s(channel.as_str()))
            .expression_attribute_values(":max", n(max as i64))
            .send()
            .await;
        match counted {
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let joined = self.channel_set(id, i64::MIN).await?.unwrap_or_default();
                let member = joined.iter().any(|c| c == channel.as_str());
                return Ok(if member { Joined::Already } else { Joined::Full });
            }
            Err(e) => return Err(sdk_error(e)),
        }
        let mut item = HashMap::from([
            ("pk".to_owned(), conn_pk(id)),
            ("sk".to_owned(), s(&format!("{CHAN_PREFIX}{channel}"))),
            (CHANNEL.to_owned(), s(channel.as_str())),
            ("connection_id".to_owned(), s(id.as_str())),
            ("endpoint".to_owned(), s(&session.endpoint)),
            ("api_id".to_owned(), s(&session.api_id)),
            (TTL_ATTRIBUTE.to_owned(), n(session.expires_at)),
        ]);
        if let Some(metadata) = metadata_attribute(session) {
            item.insert("metadata".to_owned(), metadata);
        }
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(Joined::New),
            // The item was there (a session written before the channel set): now both agree.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Joined::Already),
            Err(e) => {
                // Give the place back; if that fails too, it expires with the session.
                let _ = self.forget_channel(id, channel).await;
                Err(sdk_error(e))
            }
        }
    }

    async fn admit_message(
        &self,
        id: &ConnectionId,
        now: i64,
        window: i64,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        let seen = now.saturating_mul(1000);
        if limit == 0 {
            // No count to write: a read, and `last_seen` written at most once a minute.
            let Some(mut session) = self.get_session(id, now).await? else {
                return Ok(Admission::NoSession);
            };
            if seen - session.last_seen >= LAST_SEEN_EVERY_MS {
                let touched = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", conn_pk(id))
                    .key("sk", s(SESSION_SK))
                    .update_expression("SET last_seen = :seen")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":seen", n(seen))
                    .send()
                    .await;
                unless_condition_failed(touched)?;
                session.last_seen = seen;
            }
            return Ok(Admission::Admitted(Box::new(session)));
        }
        // One conditional update on the session item: it must exist and be live, and this
        // window's count (an attribute per window; the two before it are dropped) be under the
        // limit. It sets `last_seen` in the same write and returns the session, so no read comes
        // first.
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #w :one SET last_seen = :seen REMOVE #p1, #p2")
            .condition_expression("attribute_exists(pk) AND #exp > :now AND (attribute_not_exists(#w) OR #w < :limit)")
            .expression_attribute_names("#w", format!("{MESSAGES_PREFIX}{window}"))
            .expression_attribute_names("#p1", format!("{MESSAGES_PREFIX}{}", window - 1))
            .expression_attribute_names("#p2", format!("{MESSAGES_PREFIX}{}", window - 2))
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":seen", n(seen))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match counted {
            Ok(out) => Ok(Admission::Admitted(Box::new(session_from(&out.attributes.unwrap_or_default())?))),
            // Refused: over the limit, or no live session. Only this (rare) path reads.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Ok(match self.get_session(id, now).await? {
                    Some(_) => Admission::Limited,
                    None => Admission::NoSession,
                })
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn charge_messages(
        &self,
        id: &ConnectionId,
        window: i64,
        limit: u32,
        units: u32,
    ) -> Result<bool, StoreError> {
        if limit == 0 {
            return Ok(true);
        }
        if units > limit {
            return Ok(false);
        }
        // The same count `admit_message` keeps, raised by `units` only while it stays within the
        // limit (a condition cannot add, so the bound is `limit - units`).
        let charged = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("ADD #w :units")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#w) OR #w <= :most)")
            .expression_attribute_names("#w", format!("{MESSAGES_PREFIX}{window}"))
            .expression_attribute_values(":units", n(i64::from(units)))
            .expression_attribute_values(":most", n(i64::from(limit - units)))
            .send()
            .await;
        match charged {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn claim_connection(
        &self,
        session: &Session,
        limits: UserLimits,
        issued_ms: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let Some(user) = session.user_id() else {
            return Ok(Claim::Claimed { slot: false });
        };
        let (max, limit) = (limits.max_connections, limits.connects_per_minute);
        let slot = max > 0;
        let id = session.connection_id.as_str();
        let window = now.div_euclid(crate::store::RATE_WINDOW_SECS);
        let counter = format!("{CONNECTS_PREFIX}{window}");
        for _ in 0..CLAIM_ATTEMPTS {
            // The common case: one conditional write to the user item that checks the user's
            // sessions were not closed since the token was issued, counts the connect in this
            // minute's window (dropping the two before) and takes a slot. With both limits off it
            // only checks, keeping the item's expiry (a close's mark must outlive its tokens).
            let mut sets = vec![if slot || limit > 0 { "#exp = :exp" } else { "#exp = if_not_exists(#exp, :exp)" }];
            let mut conditions = vec!["(attribute_not_exists(#closed) OR #closed < :issued)"];
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(slots_key(user)))
                .expression_attribute_names("#closed", CLOSED)
                .expression_attribute_values(":issued", n(issued_ms));
            if slot {
                sets.push("slots.#id = :exp");
                conditions.push("attribute_exists(slots) AND (size(slots) < :max OR attribute_exists(slots.#id))");
                update =
                    update.expression_attribute_names("#id", id).expression_attribute_values(":max", n(max as i64));
            }
            let mut expression = format!("SET {}", sets.join(", "));
            if limit > 0 {
                expression.push_str(" ADD #w :one REMOVE #p1, #p2");
                conditions.push("(attribute_not_exists(#w) OR #w < :limit)");
                update = update
                    .expression_attribute_names("#w", &counter)
                    .expression_attribute_names("#p1", format!("{CONNECTS_PREFIX}{}", window - 1))
                    .expression_attribute_names("#p2", format!("{CONNECTS_PREFIX}{}", window - 2))
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":limit", n(i64::from(limit)));
            }
            let claimed = update
                .update_expression(expression)
                .condition_expression(conditions.join(" AND "))
                .expression_attribute_names("#exp", TTL_ATTRIBUTE)
                .expression_attribute_values(":exp", n(session.expires_at))
                .send()
                .await;
            match claimed {
                Ok(_) => return Ok(Claim::Claimed { slot }),
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
                Err(e) => return Err(sdk_error(e)),
            }
            // Refused: read the user item and see why.
            let item = self.user_item(user).await?;
            if item.as_ref().and_then(|i| get_n(i, CLOSED).ok()).is_some_and(|closed| closed >= issued_ms) {
                return Ok(Claim::Closed);
            }
            let counted = item.as_ref().and_then(|i| get_n(i, &counter).ok()).unwrap_or(0);
            if limit > 0 && counted >= i64::from(limit) {
                return Ok(Claim::RateLimited);
            }
            if !slot {
                continue; // the window turned between the write and the read
            }
            let slots = item.as_ref().and_then(|i| match i.get("slots") {
                Some(AttributeValue::M(slots)) => Some(
                    slots
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_n().ok().and_then(|n| n.parse().ok()).unwrap_or(0)))
                        .collect::<HashMap<String, i64>>(),
                ),
                _ => None,
            });
            let Some(slots) = slots else {
                // No slot map yet: create the item with it, or add it to an item without one,
                // then claim again.
                // A lost race (the item or its map appeared meanwhile) only means claim again.
                match item {
                    None => unless_condition_failed(
                        self.client
                            .put_item()
                            .table_name(&self.table)
                            .set_item(Some(slots_key(user)))
                            .item("slots", AttributeValue::M(HashMap::new()))
                            .item(TTL_ATTRIBUTE, n(session.expires_at))
                            .condition_expression("attribute_not_exists(pk)")
                            .send()
                            .await,
                    )?,
                    Some(_) => unless_condition_failed(
                        self.client
                            .update_item()
                            .table_name(&self.table)
                            .set_key(Some(slots_key(user)))
                            .update_expression("SET slots = :empty")
                            .condition_expression("attribute_not_exists(slots)")
                            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
                            .send()
                            .await,
                    )?,
                }
                continue;
            };
            let expired: Vec<&String> = slots.iter().filter(|(_, exp)| **exp <= now).map(|(k, _)| k).collect();
            if expired.is_empty() {
                if slots.len() < max {
                    continue; // a slot was freed after the write was refused
                }
                return Ok(Claim::Full);
            }
            let names: Vec<String> = (0..expired.len()).map(|i| format!("#e{i}")).collect();
            let mut reclaim =
                self.client.update_item().table_name(&self.table).set_key(Some(slots_key(user))).update_expression(
                    format!(
                        "REMOVE {}",
                        names.iter().map(|name| format!("slots.{name}")).collect::<Vec<_>>().join(", ")
                    ),
                );
            for (name, key) in names.iter().zip(expired) {
                reclaim = reclaim.expression_attribute_names(name, key);
            }
            reclaim.send().await.map_err(sdk_error)?;
        }
        Ok(Claim::Full)
    }

    async fn close_user(&self, user: &str, now_ms: i64, keep_until: i64) -> Result<(), StoreError> {
        // The mark, and the item's expiry pushed out to `keep_until` where it is sooner (the item
        // of a user with no live connection may be about to expire); otherwise the mark alone.
        let extended = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(slots_key(user)))
            .update_expression("SET #closed = :now, #exp = :keep")
            .condition_expression("attribute_not_exists(#exp) OR #exp < :keep")
            .expression_attribute_names("#closed", CLOSED)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":keep", n(keep_until))
            .send()
            .await;
        match extended {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(slots_key(user)))
                    .update_expression("SET #closed = :now")
                    .expression_attribute_names("#closed", CLOSED)
                    .expression_attribute_values(":now", n(now_ms))
                    .send()
                    .await
                    .map_err(sdk_error)?;
                Ok(())
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn open_session(
        &self,
        session: &Session,
        channel: Option<&ChannelName>,
        holds_slot: bool,
    ) -> Result<(), StoreError> {
        // The session and its connect channel's membership are one item: it carries the
        // channel index's key and projected attributes itself.
        let mut item = session_item(session);
        item.insert(SLOT.to_owned(), AttributeValue::Bool(holds_slot));
        if let Some(channel) = channel {
            item.insert(CHANNEL.to_owned(), s(channel.as_str()));
            item.insert(CHANNELS.to_owned(), AttributeValue::Ss(vec![channel.as_str().to_owned()]));
        }
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    async fn leave(&self, id: &ConnectionId, channel: &ChannelName) -> Result<bool, StoreError> {
        // A channel joined after `$connect` has its own item ...
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(&format!("{CHAN_PREFIX}{channel}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        if out.attributes.is_some_and(|a| !a.is_empty()) {
            self.forget_channel(id, channel).await?;
            return Ok(true);
        }
        // ... the connect channel is on the session item.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", conn_pk(id))
            .key("sk", s(SESSION_SK))
            .update_expression("REMOVE #ch DELETE #cs :set")
            .condition_expression("#ch = :name")
            .expression_attribute_names("#ch", CHANNEL)
            .expression_attribute_names("#cs", CHANNELS)
            .expression_attribute_values(":name", s(channel.as_str()))
            .expression_attribute_values(":set", AttributeValue::Ss(vec![channel.as_str().to_owned()]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn channels_of(&self, id: &ConnectionId, now: i64) -> Result<Vec<ChannelName>, StoreError> {
        // One read of the session's channel set; a session written before the set existed has
        // its memberships listed instead.
        let names = match self.channel_set(id, now).await? {
            Some(names) => names,
            None => self.membership_names(id, now).await?,
        };
        channel_names(names)
    }

    async fn channel_page(
        &self,
        channel: &ChannelName,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.index_page(CHANNEL_INDEX, "channel", channel.as_str(), cursor, limit, now).await
    }

    async fn user_page(
        &self,
        user_id: &str,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        self.index_page(USER_INDEX, "user_id", user_id, cursor, limit, now).await
    }

    async fn scan_page(
        &self,
        segment: Segment,
        filter: &SessionFilter,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<Recipient>, StoreError> {
        // Sessions, or with a channel prefix the memberships and sessions in a matching channel
        // (memberships carry the session's api_id and metadata, so the other conditions apply to
        // them alike).
        let mut conditions = vec!["#exp > :now".to_owned()];
        let mut request = self.client.scan().table_name(&self.table);
        match &filter.channel_prefix {
            None => {
                conditions.push("sk = :session".to_owned());
                request = request.expression_attribute_values(":session", s(SESSION_SK));
            }
            Some(prefix) => {
                // Memberships, and sessions whose connect channel matches.
                conditions.push("(begins_with(sk, :chan) OR (sk = :session AND begins_with(#ch, :prefix)))".to_owned());
                request = request
                    .expression_attribute_values(":chan", s(&format!("{CHAN_PREFIX}{prefix}")))
                    .expression_attribute_values(":session", s(SESSION_SK))
                    .expression_attribute_values(":prefix", s(prefix))
                    .expression_attribute_names("#ch", CHANNEL);
            }
        }
        if let Some(api) = &filter.api_id {
            conditions.push("api_id = :api".to_owned());
            request = request.expression_attribute_values(":api", s(api));
        }
        for (i, (key, value)) in filter.metadata.iter().enumerate() {
            conditions.push(format!("metadata.#m{i} = :m{i}"));
            request = request
                .expression_attribute_names(format!("#m{i}"), key)
                .expression_attribute_values(format!(":m{i}"), s(value));
        }
        let mut request = request
            .filter_expression(conditions.join(" AND "))
            .projection_expression("connection_id, endpoint")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .limit(page_limit(limit))
            .set_exclusive_start_key(decode_cursor(cursor)?);
        if segment.total > 1 {
            request = request.segment(segment.index as i32).total_segments(segment.total as i32);
        }
        let out = request.send().await.map_err(sdk_error)?;
        let items = out.items.unwrap_or_default().iter().map(recipient_of).collect::<Result<_, _>>()?;
        Ok(Page { items, next: encode_cursor(out.last_evaluated_key)? })
    }

    async fn expired_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
        now: i64,
    ) -> Result<Page<ConnectionId>, StoreError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :conn) AND #exp <= :now")
            .projection_expression("pk")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":conn", s(CONN_PREFIX))
            .expression_attribute_values(":now", n(now))
            .limit(page_limit(limit))
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut ids: Vec<ConnectionId> = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = get_s(&item, "pk").and_then(|pk| pk.strip_prefix(CONN_PREFIX)).unwrap_or_default();
            let id = ConnectionId::new(id).map_err(corrupt)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Page { items: ids, next: encode_cursor(out.last_evaluated_key)? })
    }
}
