//! Drops through the API: creators define a drop with its catalog, open it, restock and close it
//! (each a `DropTrigger` on `drop-triggers`); producers confirm or cancel holds (`HoldAction`s) and
//! mark moments to clip (`ClipRequest`s); everyone reads a drop's state, which comes from the
//! matcher's Redis keys (read only: the reservation script alone changes them).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dropline_core::kafka::{self, now_ms};
use dropline_core::TopicKind;
use dropline_proto::v1::{
    drop_trigger, Angle, CatalogItem, ClipReason, CloseDrop, DropTrigger, HoldAction, HoldActionKind,
    OpenDrop, Restock,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, Body, MaybeBody};
use crate::state::AppState;

/// Most channels (and co-op partners) of one drop.
const MAX_CHANNELS: usize = 20;
/// Largest encoded open trigger: well under the broker's message limit (1 MiB by default), so a
/// drop that opens here is never a message the broker refuses.
const MAX_OPEN_BYTES: usize = 512 * 1024;

/// One item of a drop's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Stock-keeping unit, e.g. `HOODIE-L` (letters, digits, `_`, `-`; at most 64; kept upper-cased).
    pub sku: String,
    /// What viewers type, e.g. `hoodie`.
    pub name: String,
    /// Other words for it (`hoody`, `sweatshirt`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Units for sale at the open.
    pub stock: u32,
    #[serde(default)]
    pub price_cents: i64,
    /// Product and size when the SKU is one size of a product (`hoodie`, `L`).
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub size: String,
    /// Where buyers pay for this SKU, e.g. a Stripe Payment Link (`https://buy.stripe.com/…`); the
    /// claim page's Pay opens it with `client_reference_id=<claim code>` appended.
    #[serde(default)]
    pub checkout_url: String,
}

/// A new drop.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDrop {
    /// Unique id (letters, digits, `.`, `_`, `-`).
    pub id: String,
    pub title: String,
    pub items: Vec<Item>,
    /// Units one buyer may hold or buy (0 = no limit).
    #[serde(default)]
    pub limit_per_buyer: u32,
    /// Payment window of a reservation, seconds (10 s to a day; default 300).
    #[serde(default = "default_hold")]
    pub hold_seconds: u32,
    #[serde(default)]
    pub waitlist: bool,
    /// Longest waitlist per SKU (0 = no cap).
    #[serde(default)]
    pub waitlist_cap: u32,
    /// Chat channels the drop is live on, e.g. `twitch:#creator`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The stream recording clips are cut from (path inside the recordings directory).
    #[serde(default)]
    pub recording: String,
    /// The stream's cameras, each recorded apart (instead of `recording`): every moment is clipped
    /// from each, over the same wall-clock window.
    #[serde(default)]
    pub angles: Vec<AngleSpec>,
    /// The angle whose sound composed clips use (empty: the first).
    #[serde(default)]
    pub main_angle: String,
    /// Most units in one order (0 = the matcher's default).
    #[serde(default)]
    pub max_quantity_per_order: u32,
    /// Split a very hot drop's stock over this many shards (Redis Cluster slots), 2–64; 0 or 1:
    /// one shard.
    #[serde(default)]
    pub shards: u32,
    /// A co-op drop's partners: each a chat channel and its share of the revenue in basis points
    /// (the shares add up to 10,000); the report attributes orders by channel and splits the
    /// revenue into payouts.
    #[serde(default)]
    pub partners: Vec<Partner>,
}

/// One camera of a drop's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AngleSpec {
    /// `creator`, `product`, `screen`… (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Its recording (path inside the recordings directory).
    pub recording: String,
}

/// Most cameras a drop names.
pub const MAX_ANGLES: usize = 8;

/// A partner of a co-op drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// The chat channel the partner streams the drop on, e.g. `twitch:#friend`.
    pub channel: String,
    /// Share of the revenue, basis points (2,500 = 25 %).
    pub share_bp: u32,
}

fn default_hold() -> u32 {
    300
}

/// Where a drop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DropStatus {
    Draft,
    Open,
    Closed,
}

/// A drop as the console keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DropRecord {
    pub id: String,
    pub title: String,
    pub items: Vec<Item>,
    pub limit_per_buyer: u32,
    pub hold_seconds: u32,
    pub waitlist: bool,
    pub waitlist_cap: u32,
    pub channels: Vec<String>,
    pub recording: String,
    #[serde(default)]
    pub angles: Vec<AngleSpec>,
    #[serde(default)]
    pub main_angle: String,
    pub max_quantity_per_order: u32,
    /// Shards of a split drop (0 or 1: not split).
    #[serde(default)]
    pub shards: u32,
    /// Co-op partners (empty: a drop of one creator).
    #[serde(default)]
    pub partners: Vec<Partner>,
    pub status: DropStatus,
    pub created_at_ms: i64,
    pub opened_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

/// One SKU's numbers, as the matcher keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SkuState {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    /// Units ever put on sale (opening stock and restocks).
    pub total: i64,
    /// Units for sale now.
    pub left: i64,
    /// Units reserved and waiting for payment.
    pub reserved: i64,
    /// Units paid for.
    pub confirmed: i64,
    /// Orders waiting for a unit.
    pub waitlisted: i64,
    pub sold_out: bool,
}

/// A drop and its live numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DropState {
    pub drop: DropRecord,
    pub skus: Vec<SkuState>,
    /// Reservations waiting for payment.
    pub holds_pending: i64,
    /// Orders on the waitlist.
    pub waitlisted: i64,
}

pub(crate) fn validate_id(field: &str, id: &str) -> Result<(), ApiError> {
    dropline_core::domain::check_name(field, id).map_err(ApiError::bad_request)
}

impl CreateDrop {
    /// Checks every field (the message names the first bad one), the catalog with the matcher's own check.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |field: String, why: &str| Err(ApiError::bad_request(format!("{field}: {why}")));
        validate_id("id", &self.id)?;
        if self.title.trim().is_empty() || self.title.len() > 200 || self.title.contains(char::is_control) {
            return bad("title".into(), "must be 1–200 characters, none a control character");
        }
        // The catalog as the matcher will read it, through the check the matcher itself applies.
        let open = open_trigger(&self.clone().into_draft(0));
        dropline_core::domain::check_catalog(&open.items).map_err(catalog_error)?;
        for (i, item) in self.items.iter().enumerate() {
            if item.name.trim().is_empty() {
                return bad(format!("items[{i}].name"), "must not be empty (it is what viewers type)");
            }
            let url = &item.checkout_url;
            let web = url.starts_with("https://") || url.starts_with("http://");
            if !url.is_empty()
                && (!web
                    || url.len() > 500
                    || url.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#'))
            {
                return bad(
                    format!("items[{i}].checkout_url"),
                    "must be an http(s) URL of at most 500 bytes, without spaces or '#'",
                );
            }
        }
        check_recording("recording", &self.recording)?;
        if self.angles.len() > MAX_ANGLES {
            return bad("angles".into(), &format!("a drop names at most {MAX_ANGLES} angles"));
        }
        for (i, angle) in self.angles.iter().enumerate() {
            dropline_core::domain::check_name(&format!("angles[{i}].name"), &angle.name)
                .map_err(ApiError::bad_request)?;
            if self.angles[..i].iter().any(|a| a.name == angle.name) {
                return bad(format!("angles[{i}].name"), &format!("{:?} is named twice", angle.name));
            }
            if angle.recording.is_empty() {
                return bad(format!("angles[{i}].recording"), "is required");
            }
            check_recording(&format!("angles[{i}].recording"), &angle.recording)?;
        }
        if !self.main_angle.is_empty() && !self.angles.iter().any(|a| a.name == self.main_angle) {
            return bad("main_angle".into(), "must be the name of one of the angles");
        }
        if self.channels.len() > MAX_CHANNELS {
            return bad("channels".into(), &format!("a drop is live on at most {MAX_CHANNELS} channels"));
        }
        if self.partners.len() > MAX_CHANNELS {
            return bad("partners".into(), &format!("a co-op has at most {MAX_CHANNELS} partners"));
        }
        let size = prost::Message::encoded_len(&open);
        if size > MAX_OPEN_BYTES {
            return bad(
                "items".into(),
                &format!("the catalog is {size} bytes encoded; at most {MAX_OPEN_BYTES} fit in a drop's open trigger"),
            );
        }
        if self.shards > 64 {
            return bad("shards".into(), "must be 0–64");
        }
        if !(10..=86_400).contains(&self.hold_seconds) {
            return bad("hold_seconds".into(), "must be 10–86400");
        }
        for (i, channel) in self.channels.iter().enumerate() {
            if channel.trim().is_empty()
                || channel.len() > 100
                || channel.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return bad(format!("channels[{i}]"), "must be like twitch:#creator");
            }
        }
        if !self.partners.is_empty() {
            let mut seen = HashMap::new();
            for (i, partner) in self.partners.iter().enumerate() {
                let channel = partner.channel.trim().to_lowercase();
                if channel.is_empty()
                    || channel.len() > 100
                    || channel.contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return bad(format!("partners[{i}].channel"), "must be like twitch:#creator");
                }
                if let Some(first) = seen.insert(channel, i) {
                    return bad(format!("partners[{i}].channel"), &format!("repeats partners[{first}]"));
                }
            }
            let shares: Vec<u32> = self.partners.iter().map(|p| p.share_bp).collect();
            crate::payout::check_shares(&shares).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        Ok(())
    }
}

impl CreateDrop {
    /// The draft this request describes (names trimmed, channels lower-case).
    fn into_draft(self, created_at_ms: i64) -> DropRecord {
        DropRecord {
            id: self.id,
            title: self.title.trim().to_owned(),
            items: self.items,
            limit_per_buyer: self.limit_per_buyer,
            hold_seconds: self.hold_seconds,
            waitlist: self.waitlist,
            waitlist_cap: self.waitlist_cap,
            channels: self.channels.iter().map(|c| c.trim().to_lowercase()).collect(),
            recording: self.recording,
            angles: self.angles,
            main_angle: self.main_angle,
            max_quantity_per_order: self.max_quantity_per_order,
            shards: self.shards,
            partners: self
                .partners
                .iter()
                .map(|p| Partner { channel: p.channel.trim().to_lowercase(), share_bp: p.share_bp })
                .collect(),
            status: DropStatus::Draft,
            created_at_ms,
            opened_at_ms: None,
            closed_at_ms: None,
        }
    }
}

/// The `OpenDrop` a record opens with. Chat's `!buy 2` names a product by its number: sizes of
/// one product share it, numbered in catalog order.
fn open_trigger(record: &DropRecord) -> OpenDrop {
    let mut products: Vec<String> = Vec::new();
    let mut number_of = |item: &Item| {
        let product = if item.product.is_empty() { item.name.as_str() } else { item.product.as_str() };
        let index = products.iter().position(|p| p.eq_ignore_ascii_case(product)).unwrap_or_else(|| {
            products.push(product.to_owned());
            products.len() - 1
        });
        u32::try_from(index + 1).unwrap_or(u32::MAX)
    };
    let items = record
        .items
        .iter()
        .map(|item| CatalogItem {
            sku: item.sku.clone(),
            name: item.name.clone(),
            aliases: item.aliases.clone(),
            stock: item.stock,
            price_cents: item.price_cents,
            product: item.product.clone(),
            size: item.size.clone(),
            item_number: number_of(item),
        })
        .collect();
    OpenDrop {
        items,
        limit_per_buyer: record.limit_per_buyer,
        hold_seconds: record.hold_seconds,
        waitlist: record.waitlist,
        waitlist_cap: record.waitlist_cap,
        title: record.title.clone(),
        channels: record.channels.clone(),
        recording: record.recording.clone(),
        max_quantity_per_order: record.max_quantity_per_order,
        shards: record.shards,
        angles: record
            .angles
            .iter()
            .map(|a| Angle { name: a.name.clone(), recording: a.recording.clone() })
            .collect(),
        main_angle: record.main_angle.clone(),
    }
}

/// A recording path as the API takes it: at most 500 bytes, no control characters (the clipper
/// checks that it stays inside its recordings directory).
fn check_recording(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > 500 || value.contains(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field}: must be a path of at most 500 bytes, without control characters"
        )));
    }
    Ok(())
}

/// The shared catalog check's refusal as the API says it: `items[3].sku: …`.
fn catalog_error(e: dropline_core::domain::DomainError) -> ApiError {
    use dropline_core::domain::DomainError as E;
    let message = match &e {
        E::InvalidCatalogItem { index, field, reason } => format!("items[{index}].{field}: {reason}"),
        E::DuplicateSku { sku, first, second } => {
            format!("items[{second}].sku: {sku} repeats items[{first}]")
        }
        other => format!("items: {other}"),
    };
    ApiError::bad_request(message)
}

/// A SKU as the matcher keys it (a SKU the shared check refused never got this far).
pub fn canonical_sku(raw: &str) -> String {
    dropline_core::domain::Sku::parse(raw)
        .map_or_else(|_| raw.trim().to_ascii_uppercase(), |s| s.as_str().to_owned())
}

/// Where the console keeps drop records: one hash per deployment (its keyspace).
pub fn records_key(state: &AppState) -> String {
    state.settings.keyspace.console_drops()
}

pub async fn load(state: &AppState, id: &str) -> Result<DropRecord, ApiError> {
    validate_id("drop id", id)?;
    let mut redis = state.redis.clone();
    let raw: Option<String> = redis.hget(records_key(state), id).await?;
    let raw = raw.ok_or_else(|| ApiError::not_found(format!("no drop {id:?}")))?;
    serde_json::from_str(&raw).map_err(|e| ApiError::unavailable(format!("stored drop {id} unreadable: {e}")))
}

/// Replaces the record if it is still `before` (compare-and-set): `false` if it changed meanwhile.
async fn swap(state: &AppState, before: &DropRecord, after: &DropRecord) -> Result<bool, ApiError> {
    let script = redis::Script::new(
        "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) \
         return 1 else return 0 end",
    );
    let encode = |r: &DropRecord| serde_json::to_string(r).map_err(|e| ApiError::unavailable(e.to_string()));
    let mut redis = state.redis.clone();
    let swapped: i32 = script
        .key(records_key(state))
        .arg(&before.id)
        .arg(encode(before)?)
        .arg(encode(after)?)
        .invoke_async(&mut redis)
        .await?;
    Ok(swapped == 1)
}

async fn publish_trigger(
    state: &AppState,
    drop_id: &str,
    trigger_id: String,
    action: drop_trigger::Action,
) -> Result<(), ApiError> {
    let trigger =
        DropTrigger { drop_id: drop_id.to_owned(), sent_at_ms: now_ms(), trigger_id, action: Some(action) };
    let topic = state.settings.topics.name(TopicKind::DropTriggers);
    kafka::publish(&state.producer, topic, drop_id, &trigger).await?;
    Ok(())
}

/// Create a drop (draft) with its catalog.
#[utoipa::path(post, path = "/api/drops", tag = "drops", request_body = CreateDrop,
    responses((status = 201, body = DropRecord), (status = 400, description = "invalid field, named in the message"),
        (status = 409, description = "a drop with this id exists")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<CreateDrop>,
) -> Result<(StatusCode, Json<DropRecord>), ApiError> {
    caller.write(&state.access, &[Role::Creator], "create drops")?;
    new.validate()?;
    let record = new.into_draft(now_ms());
    let json = serde_json::to_string(&record).map_err(|e| ApiError::unavailable(e.to_string()))?;
    let mut redis = state.redis.clone();
    let created: bool = redis.hset_nx(records_key(&state), &record.id, json).await?;
    if !created {
        return Err(ApiError::conflict(format!("a drop {:?} already exists", record.id)));
    }
    tracing::info!(drop_id = %record.id, items = record.items.len(), "drop created");
    Ok((StatusCode::CREATED, Json(record)))
}

/// Replace a draft drop (the studio's Save): the same fields and checks as creating it; only a
/// draft can change.
#[utoipa::path(put, path = "/api/drops/{id}", tag = "drops", params(("id" = String, Path)), request_body = CreateDrop,
    responses((status = 200, body = DropRecord), (status = 400, description = "invalid field, named in the message"),
        (status = 404), (status = 409, description = "not a draft, or changed meanwhile")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(new): Body<CreateDrop>,
) -> Result<Json<DropRecord>, ApiError> {
    caller.write(&state.access, &[Role::Creator], "edit drops")?;
    if new.id != id {
        return Err(ApiError::bad_request(format!("id: {:?} is not the drop being edited ({id:?})", new.id)));
    }
    new.validate()?;
    let before = load(&state, &id).await?;
    if before.status != DropStatus::Draft {
        return Err(ApiError::conflict(
            format!("drop {id} is {:?}; only a draft can be edited", before.status).to_lowercase(),
        ));
    }
    let after = new.into_draft(before.created_at_ms);
    if !swap(&state, &before, &after).await? {
        return Err(ApiError::conflict(format!("drop {id} changed meanwhile; reload and retry")));
    }
    tracing::info!(drop_id = %id, items = after.items.len(), "draft edited");
    Ok(Json(after))
}

/// All drops, newest first.
#[utoipa::path(get, path = "/api/drops", tag = "drops", responses((status = 200, body = [DropRecord])),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<DropRecord>>, ApiError> {
    let mut redis = state.redis.clone();
    let all: HashMap<String, String> = redis.hgetall(records_key(&state)).await?;
    let mut drops: Vec<DropRecord> = all.values().filter_map(|raw| serde_json::from_str(raw).ok()).collect();
    drops.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| a.id.cmp(&b.id)));
    Ok(Json(drops))
}

/// The matcher's numbers for `record`: one round trip per drop (its keys share the drop's hash
/// tag: one slot); a split drop's numbers are the sums over its shards.
pub async fn read_state(state: &AppState, record: DropRecord) -> Result<DropState, ApiError> {
    type Hash = HashMap<String, i64>;
    let ids = dropline_core::shards::key_ids(&record.id, record.shards);
    let (mut stock, mut held, mut sold, mut total, mut waiting, mut holds) =
        (Hash::new(), Hash::new(), Hash::new(), Hash::new(), Hash::new(), 0);
    for id in &ids {
        let keys = |name: &str| state.settings.keyspace.drop_key(id, name);
        let mut redis = state.redis.clone();
        let (s, h, d, t, w, n): (Hash, Hash, Hash, Hash, Hash, Option<i64>) = redis::pipe()
            .hgetall(keys("stock"))
            .hgetall(keys("held"))
            .hgetall(keys("sold"))
            .hgetall(keys("total"))
            .hgetall(keys("waiting"))
            .hget(keys("meta"), dropline_core::keys::ACTIVE_HOLDS)
            .query_async(&mut redis)
            .await?;
        for (sum, part) in
            [(&mut stock, s), (&mut held, h), (&mut sold, d), (&mut total, t), (&mut waiting, w)]
        {
            for (sku, units) in part {
                *sum.entry(sku).or_default() += units;
            }
        }
        holds += n.unwrap_or(0);
    }
    let get = |hash: &Hash, sku: &str| hash.get(sku).copied().unwrap_or(0);
    let skus: Vec<SkuState> = record
        .items
        .iter()
        .map(|item| {
            // Redis counts a SKU under its canonical form (`hoodie-l` is `HOODIE-L`).
            let sku = canonical_sku(&item.sku);
            let opened = record.status != DropStatus::Draft;
            let left = if opened { get(&stock, &sku) } else { i64::from(item.stock) };
            let total = if opened { get(&total, &sku) } else { i64::from(item.stock) };
            SkuState {
                name: item.name.clone(),
                price_cents: item.price_cents,
                total,
                left,
                reserved: get(&held, &sku),
                confirmed: get(&sold, &sku),
                waitlisted: get(&waiting, &sku),
                sku,
                sold_out: opened && total > 0 && left <= 0,
            }
        })
        .collect();
    let waitlisted = skus.iter().map(|s| s.waitlisted).sum();
    Ok(DropState { drop: record, skus, holds_pending: holds, waitlisted })
}

/// A drop with its live numbers.
#[utoipa::path(get, path = "/api/drops/{id}", tag = "drops", params(("id" = String, Path)),
    responses((status = 200, body = DropState), (status = 404)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DropState>, ApiError> {
    let record = load(&state, &id).await?;
    Ok(Json(read_state(&state, record).await?))
}

/// Open a drop: the matcher starts taking orders.
#[utoipa::path(post, path = "/api/drops/{id}/open", tag = "drops", params(("id" = String, Path)),
    responses((status = 202, body = DropRecord), (status = 404), (status = 409, description = "not a draft")),
    security(("bearer" = [])))]
pub async fn open(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DropRecord>), ApiError> {
    caller.write(&state.access, &[Role::Creator], "open drops")?;
    let before = load(&state, &id).await?;
    if before.status != DropStatus::Draft {
        return Err(ApiError::conflict(
            format!("drop {id} is {:?}, not a draft", before.status).to_lowercase(),
        ));
    }
    let mut after = before.clone();
    after.status = DropStatus::Open;
    after.opened_at_ms = Some(now_ms());
    if !swap(&state, &before, &after).await? {
        return Err(ApiError::conflict(format!("drop {id} changed meanwhile; reload and retry")));
    }
    let open = open_trigger(&after);
    if let Err(e) = publish_trigger(&state, &id, format!("open-{id}"), drop_trigger::Action::Open(open)).await
    {
        let _ = swap(&state, &after, &before).await; // not opened after all
        return Err(e);
    }
    tracing::info!(drop_id = %id, "drop opened");
    Ok((StatusCode::ACCEPTED, Json(after)))
}

/// Why a drop is closed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    #[serde(default)]
    pub reason: String,
}

/// Close a drop: no more orders; waitlisted orders are told it is sold out.
#[utoipa::path(post, path = "/api/drops/{id}/close", tag = "drops", params(("id" = String, Path)),
    request_body(content = Option<CloseRequest>), responses((status = 202, body = DropRecord), (status = 409)),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MaybeBody(body): MaybeBody<CloseRequest>,
) -> Result<(StatusCode, Json<DropRecord>), ApiError> {
    caller.write(&state.access, &[Role::Creator], "close drops")?;
    let before = load(&state, &id).await?;
    if before.status != DropStatus::Open {
        return Err(ApiError::conflict(format!("drop {id} is not open")));
    }
    let mut after = before.clone();
    after.status = DropStatus::Closed;
    after.closed_at_ms = Some(now_ms());
    if !swap(&state, &before, &after).await? {
        return Err(ApiError::conflict(format!("drop {id} changed meanwhile; reload and retry")));
    }
    let reason = body.map(|b| b.reason).unwrap_or_default();
    if let Err(e) =
        publish_trigger(&state, &id, format!("close-{id}"), drop_trigger::Action::Close(CloseDrop { reason }))
            .await
    {
        let _ = swap(&state, &after, &before).await;
        return Err(e);
    }
    tracing::info!(drop_id = %id, "drop closed");
    Ok((StatusCode::ACCEPTED, Json(after)))
}

/// More units of one SKU.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    pub sku: String,
    /// 1 or more.
    pub quantity: u32,
}

/// Put more units of a SKU on sale (waitlisted orders get them first).
#[utoipa::path(post, path = "/api/drops/{id}/restock", tag = "drops", params(("id" = String, Path)),
    request_body = RestockRequest, responses((status = 202), (status = 400), (status = 409)),
    security(("bearer" = [])))]
pub async fn restock(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(request): Body<RestockRequest>,
) -> Result<StatusCode, ApiError> {
    caller.write(&state.access, &[Role::Creator], "restock drops")?;
    let record = load(&state, &id).await?;
    if request.quantity == 0 {
        return Err(ApiError::bad_request("quantity: must be at least 1"));
    }
    let sku = canonical_sku(&request.sku);
    if !record.items.iter().any(|i| canonical_sku(&i.sku) == sku) {
        return Err(ApiError::bad_request(format!("sku: {:?} is not in drop {id}", request.sku)));
    }
    if record.status != DropStatus::Open {
        return Err(ApiError::conflict(format!("drop {id} is not open")));
    }
    let trigger_id = format!("restock-{}", uuid::Uuid::new_v4().simple());
    let action = drop_trigger::Action::Restock(Restock { sku, quantity: request.quantity });
    publish_trigger(&state, &id, trigger_id, action).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The drop a hold belongs to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub drop_id: String,
}

async fn hold_action(
    state: &AppState,
    caller: &Caller,
    order_id: &str,
    request: HoldRequest,
    kind: HoldActionKind,
) -> Result<StatusCode, ApiError> {
    caller.write(&state.access, &[Role::Producer], "confirm or cancel holds")?;
    if order_id.is_empty() || order_id.len() > 200 || order_id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("order_id: must be 1–200 printable characters"));
    }
    load(state, &request.drop_id).await?;
    let action = HoldAction {
        order_id: order_id.to_owned(),
        drop_id: request.drop_id.clone(),
        action: kind as i32,
        sent_at_ms: now_ms(),
    };
    let topic = state.settings.topics.name(TopicKind::HoldActions);
    kafka::publish(&state.producer, topic, &request.drop_id, &action).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Confirm a hold (the buyer paid). The outcome (`CONFIRMED`, or why not) arrives on the live view.
#[utoipa::path(post, path = "/api/holds/{order_id}/confirm", tag = "holds", params(("order_id" = String, Path)),
    request_body = HoldRequest, responses((status = 202)), security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    Body(request): Body<HoldRequest>,
) -> Result<StatusCode, ApiError> {
    hold_action(&state, &caller, &order_id, request, HoldActionKind::Confirm).await
}

/// Cancel a hold (the unit goes back on sale, to the waitlist first).
#[utoipa::path(post, path = "/api/holds/{order_id}/cancel", tag = "holds", params(("order_id" = String, Path)),
    request_body = HoldRequest, responses((status = 202)), security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    Body(request): Body<HoldRequest>,
) -> Result<StatusCode, ApiError> {
    hold_action(&state, &caller, &order_id, request, HoldActionKind::Cancel).await
}

/// A producer's "clip this".
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkerRequest {
    /// The moment (Unix ms); default now.
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default)]
    pub note: String,
    /// Start the clip on the exact frame (smart cut).
    #[serde(default)]
    pub exact: bool,
}

/// The clip a marker asked for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MarkerAccepted {
    /// The first angle's clip (the only one for a drop of one recording).
    pub clip_id: String,
    /// The moment every angle's clip belongs to.
    pub moment_id: String,
    /// One clip per angle.
    pub clip_ids: Vec<String>,
}

/// Mark a moment: the clipper cuts a clip around it.
#[utoipa::path(post, path = "/api/drops/{id}/markers", tag = "clips", params(("id" = String, Path)),
    request_body = MarkerRequest, responses((status = 202, body = MarkerAccepted), (status = 409, description = "the drop has no recording")),
    security(("bearer" = [])))]
pub async fn marker(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MaybeBody(body): MaybeBody<MarkerRequest>,
) -> Result<(StatusCode, Json<MarkerAccepted>), ApiError> {
    caller.write(&state.access, &[Role::Producer], "mark moments")?;
    let request = body.unwrap_or_default();
    let record = load(&state, &id).await?;
    let angles = dropline_core::clips::angles_of(&open_trigger(&record));
    if angles.is_empty() {
        return Err(ApiError::conflict(format!("drop {id} has no recording to clip")));
    }
    if request.note.len() > 500 {
        return Err(ApiError::bad_request("note: at most 500 bytes"));
    }
    let now = now_ms();
    let at_ms = request.at_ms.unwrap_or(now);
    if !(0..=now + 60_000).contains(&at_ms) {
        return Err(ApiError::bad_request("at_ms: must be a time in the past (Unix ms)"));
    }
    let moment = dropline_core::clips::Moment {
        moment_id: format!("marker-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        drop_id: &id,
        at_ms,
        reason: ClipReason::Marker,
        note: request.note,
        exact: request.exact,
        requested_at_ms: now,
    };
    let topic = state.settings.topics.name(TopicKind::ClipRequests);
    let requests = dropline_core::clips::requests(&moment, &angles);
    for clip in &requests {
        kafka::publish(&state.producer, topic, &id, clip).await?;
    }
    let clip_ids = requests.into_iter().map(|r| r.clip_id).collect::<Vec<_>>();
    let clip_id = clip_ids.first().cloned().unwrap_or_default();
    Ok((StatusCode::ACCEPTED, Json(MarkerAccepted { clip_id, moment_id: moment.moment_id, clip_ids })))
}
