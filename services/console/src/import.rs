//! Catalog import from a shop's CSV export — Shopify's products CSV (both header generations) or a
//! plain `sku,name,stock,…` file — into the items of a draft drop, naming every row it leaves out
//! and why. Pure: bytes in, items or the reasons out; nothing is imported half.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use dropline_core::domain::{Sku, MAX_ITEMS};

use crate::drops::Item;

/// Which export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Shopify's older products export (`Handle`, `Variant SKU`, `Variant Inventory Qty`, …).
    ShopifyLegacy,
    /// Shopify's newer products export (`URL handle`, `SKU`, `Inventory quantity`, …).
    Shopify,
    /// A plain CSV: `sku`, `name`, `stock` and optionally `price`, `product`, `size`, `aliases`
    /// (separated by `|`), `checkout_url`.
    Plain,
}

/// What an import made: the items, and the rows left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Imported {
    pub format: Format,
    pub items: Vec<Item>,
    pub skipped: Vec<RowNote>,
}

/// A row, by its line in the file (the header is line 1; a quoted field may span lines), and what
/// about it: why it was skipped, or what is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RowNote {
    pub line: u64,
    /// The column the note is about (empty when about the whole row).
    pub field: String,
    pub message: String,
}

/// Why nothing was imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not a readable CSV file: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Columns(String),
    #[error("{} row(s) cannot be imported; nothing was imported", .0.len())]
    Rows(Vec<RowNote>),
    #[error("the file has no items to import{}", if .0.is_empty() { String::new() } else { format!(" ({} rows skipped)", .0.len()) })]
    Empty(Vec<RowNote>),
}

/// Where a format keeps each field (column names as the export writes them).
struct Columns {
    format: Format,
    handle: Option<&'static str>,
    title: &'static str,
    option: Option<&'static str>,
    sku: &'static str,
    price: &'static str,
    stock: &'static str,
}

const LEGACY: Columns = Columns {
    format: Format::ShopifyLegacy,
    handle: Some("Handle"),
    title: "Title",
    option: Some("Option1 Value"),
    sku: "Variant SKU",
    price: "Variant Price",
    stock: "Variant Inventory Qty",
};

const CURRENT: Columns = Columns {
    format: Format::Shopify,
    handle: Some("URL handle"),
    title: "Title",
    option: Some("Option1 value"),
    sku: "SKU",
    price: "Price",
    stock: "Inventory quantity",
};

const PLAIN: Columns = Columns {
    format: Format::Plain,
    handle: None,
    title: "name",
    option: None,
    sku: "sku",
    price: "price",
    stock: "stock",
};

/// The header, looked up without regard to case or surrounding spaces.
struct Header(HashMap<String, usize>);

impl Header {
    fn find(&self, name: &str) -> Option<usize> {
        self.0.get(&name.trim().to_ascii_lowercase()).copied()
    }
}

fn which(header: &Header) -> Result<&'static Columns, ImportError> {
    let format = if header.find("Variant SKU").is_some() || header.find("Handle").is_some() {
        &LEGACY
    } else if header.find("URL handle").is_some() {
        &CURRENT
    } else if header.find("sku").is_some() && header.find("stock").is_some() {
        &PLAIN
    } else {
        return Err(ImportError::Columns(
            "not a products export: expected Shopify's columns (Handle, Title, Option1 Value, Variant SKU, \
             Variant Price, Variant Inventory Qty — or URL handle, Title, Option1 value, SKU, Price, \
             Inventory quantity) or a plain CSV with sku, name and stock"
                .into(),
        ));
    };
    let mut wanted = vec![format.title, format.sku, format.stock];
    wanted.extend(format.handle);
    if format.format != Format::Plain {
        wanted.push(format.price);
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|c| header.find(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(ImportError::Columns(format!("missing column(s): {}", missing.join(", "))));
    }
    Ok(format)
}

/// Cents of a price as the export writes it (`29.99`, `30`, `30.5`); empty is 0.
fn cents(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(0);
    }
    let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) || frac.len() > 2 {
        return Err(format!("{raw:?} is not a price (like 29.99)"));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("{raw:?} is too large"))?;
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    whole.checked_mul(100).and_then(|c| c.checked_add(frac)).ok_or_else(|| format!("{raw:?} is too large"))
}

/// Units of stock: a whole number, 0 or more.
fn units(raw: &str) -> Result<Option<u32>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("stock cannot be negative ({n})")),
        Ok(n) => u32::try_from(n).map(Some).map_err(|_| format!("{n} is more stock than a drop holds")),
        Err(_) => Err(format!("{raw:?} is not a whole number of units")),
    }
}

/// Reads a products CSV into a drop's items. Rows that are not variants (image rows, variants
/// without a SKU or without tracked inventory) are skipped and listed; any row with a bad field
/// (SKU, price, stock, a SKU twice) refuses the whole file, every such row named.
pub fn catalog_csv(bytes: &[u8]) -> Result<Imported, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| ImportError::Unreadable(e.to_string()))?.clone();
    let header =
        Header(header.iter().enumerate().map(|(i, name)| (name.trim().to_ascii_lowercase(), i)).collect());
    let columns = which(&header)?;
    let field = |record: &csv::StringRecord, name: &str| -> String {
        header.find(name).and_then(|i| record.get(i)).unwrap_or("").trim().to_owned()
    };
    let (mut items, mut skipped, mut errors) = (Vec::<Item>::new(), Vec::new(), Vec::new());
    let mut titles: HashMap<String, String> = HashMap::new();
    let mut skus: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Unreadable(e.to_string()))?;
        let line = record.position().map_or(0, csv::Position::line);
        let note = |field: &str, message: String| RowNote { line, field: field.to_owned(), message };
        let handle = columns.handle.map(|h| field(&record, h)).unwrap_or_default();
        let mut title = field(&record, columns.title);
        if !title.is_empty() && !handle.is_empty() {
            titles.entry(handle.clone()).or_insert_with(|| title.clone());
        } else if title.is_empty() {
            title = titles.get(&handle).cloned().unwrap_or_default();
        }
        let sku = field(&record, columns.sku);
        let (price, stock) = (field(&record, columns.price), field(&record, columns.stock));
        if sku.is_empty() {
            let why = if price.is_empty() && stock.is_empty() {
                "not a variant (an image or description row)".to_owned()
            } else {
                "a variant without a SKU: give it one in the shop to sell it here".to_owned()
            };
            skipped.push(note("", why));
            continue;
        }
        let mut bad = false;
        if let Err(e) = Sku::parse(&sku) {
            errors.push(note(columns.sku, e.to_string()));
            bad = true;
        } else if let Some(first) = skus.insert(sku.to_ascii_uppercase(), line) {
            errors.push(note(columns.sku, format!("{sku} repeats line {first}")));
            bad = true;
        }
        if title.is_empty() {
            errors.push(note(
                columns.title,
                format!("no title for {sku} (nor on an earlier row of its product)"),
            ));
            bad = true;
        }
        let price_cents = cents(&price).unwrap_or_else(|e| {
            errors.push(note(columns.price, e));
            bad = true;
            0
        });
        let stock = match units(&stock) {
            Ok(Some(n)) => Some(n),
            Ok(None) => None,
            Err(e) => {
                errors.push(note(columns.stock, e));
                bad = true;
                None
            }
        };
        if bad {
            continue;
        }
        let Some(stock) = stock else {
            skipped.push(note(
                columns.stock,
                format!("{sku}: no inventory quantity (not tracked in the shop?)"),
            ));
            continue;
        };
        let size = columns.option.map(|o| field(&record, o)).unwrap_or_else(|| field(&record, "size"));
        let size = if size == "Default Title" { String::new() } else { size };
        let product = if columns.format == Format::Plain { field(&record, "product") } else { handle };
        let aliases = field(&record, "aliases")
            .split('|')
            .map(str::trim)
            .filter(|a| !a.is_empty() && columns.format == Format::Plain)
            .map(str::to_owned)
            .collect();
        let checkout_url =
            if columns.format == Format::Plain { field(&record, "checkout_url") } else { String::new() };
        items.push(Item { sku, name: title, aliases, stock, price_cents, product, size, checkout_url });
    }
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    if items.is_empty() {
        return Err(ImportError::Empty(skipped));
    }
    if items.len() > MAX_ITEMS {
        return Err(ImportError::Columns(format!("{} items: a drop sells at most {MAX_ITEMS}", items.len())));
    }
    Ok(Imported { format: columns.format, items, skipped })
}

/// Most bytes an uploaded catalog may have (a 200-item export is a few hundred kB).
const MAX_UPLOAD: usize = 4 * 1024 * 1024;

/// Read a shop's products CSV into draft items (Shopify's exports of either generation, or a plain
/// `sku,name,stock,…` CSV): the items and the rows skipped with why. Nothing is stored: the
/// creator reviews the items and creates the drop with them (`POST /api/drops`).
#[utoipa::path(post, path = "/api/import/catalog", tag = "drops",
    request_body(content = String, content_type = "text/csv", description = "the CSV file as exported"),
    responses((status = 200, body = Imported),
        (status = 400, description = "nothing imported: `error` says why; `rows` names each bad row (line, field, message)")),
    security(("bearer" = [])))]
pub async fn catalog(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    caller: crate::auth::Caller,
    body: axum::body::Bytes,
) -> Result<axum::Json<Imported>, axum::response::Response> {
    use axum::response::IntoResponse;
    caller
        .write(&state.access, &[crate::auth::Role::Creator], "import catalogs")
        .map_err(IntoResponse::into_response)?;
    if body.len() > MAX_UPLOAD {
        let e = crate::error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: {} bytes; a catalog may have at most {MAX_UPLOAD}", body.len()),
        );
        return Err(e.into_response());
    }
    catalog_csv(&body).map(axum::Json).map_err(|e| {
        let rows = match &e {
            ImportError::Rows(rows) | ImportError::Empty(rows) => rows.clone(),
            _ => Vec::new(),
        };
        let body = serde_json::json!({ "error": format!("body: {e}"), "rows": rows });
        (axum::http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shopify's older export, as it writes it: every column, one row per variant, the title on the
    /// first row of a product only, an image row, a quoted description with a comma and a new line.
    const LEGACY_CSV: &str = "Handle,Title,Body (HTML),Vendor,Type,Tags,Published,Option1 Name,Option1 Value,\
Variant SKU,Variant Grams,Variant Inventory Tracker,Variant Inventory Qty,Variant Inventory Policy,\
Variant Fulfillment Service,Variant Price,Variant Compare At Price,Image Src\n\
logo-hoodie,Logo Hoodie,\"<p>Warm, soft</p>\n<p>Heavy cotton</p>\",Dropline,Hoodie,merch,TRUE,Size,S,HOODIE-S,600,shopify,10,deny,manual,49.00,,https://cdn.example/h.jpg\n\
logo-hoodie,,,,,,,,M,HOODIE-M,600,shopify,25,deny,manual,49.00,,\n\
logo-hoodie,,,,,,,,L,HOODIE-L,600,shopify,5,deny,manual,49.5,,\n\
logo-hoodie,,,,,,,,,,,,,,,,,https://cdn.example/h2.jpg\n\
sticker,Sticker Pack,,Dropline,Sticker,,TRUE,Title,Default Title,STICKER,10,shopify,100,deny,manual,5,,\n";

    /// The newer export's names for the same columns.
    const CURRENT_CSV: &str =
        "Title,URL handle,Description,Vendor,Product category,Type,Tags,Published on online store,\
Status,SKU,Barcode,Option1 name,Option1 value,Price,Compare-at price,Inventory quantity\n\
Logo Hoodie,logo-hoodie,\"Warm, soft\",Dropline,,Hoodie,merch,TRUE,Active,HOODIE-S,,Size,S,49.00,,10\n\
,logo-hoodie,,,,,,,,HOODIE-M,,,M,49.00,,25\n";

    #[test]
    fn the_older_shopify_export_becomes_items_with_sizes_prices_and_stock() {
        let got = catalog_csv(LEGACY_CSV.as_bytes()).expect("imports");
        assert_eq!(got.format, Format::ShopifyLegacy);
        let summary: Vec<(&str, &str, &str, &str, u32, i64)> = got
            .items
            .iter()
            .map(|i| {
                (i.sku.as_str(), i.name.as_str(), i.product.as_str(), i.size.as_str(), i.stock, i.price_cents)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("HOODIE-S", "Logo Hoodie", "logo-hoodie", "S", 10, 4900),
                ("HOODIE-M", "Logo Hoodie", "logo-hoodie", "M", 25, 4900),
                ("HOODIE-L", "Logo Hoodie", "logo-hoodie", "L", 5, 4950),
                ("STICKER", "Sticker Pack", "sticker", "", 100, 500),
            ]
        );
        // The image row, on line 6 (the description spans lines 2–3).
        assert_eq!(got.skipped.len(), 1);
        assert_eq!(got.skipped[0].line, 6);
        assert!(got.skipped[0].message.contains("not a variant"), "{:?}", got.skipped);
    }

    #[test]
    fn the_newer_shopify_export_reads_the_same_with_a_byte_order_mark() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(CURRENT_CSV.as_bytes());
        let got = catalog_csv(&bytes).expect("imports");
        assert_eq!(got.format, Format::Shopify);
        let skus: Vec<(&str, &str, u32)> =
            got.items.iter().map(|i| (i.sku.as_str(), i.name.as_str(), i.stock)).collect();
        assert_eq!(skus, [("HOODIE-S", "Logo Hoodie", 10), ("HOODIE-M", "Logo Hoodie", 25)]);
        assert!(got.skipped.is_empty());
    }

    #[test]
    fn a_plain_csv_carries_aliases_and_checkout_links() {
        let csv = "sku,name,stock,price,aliases,checkout_url\nCAP,cap,40,19.99,hat | beanie,https://buy.stripe.com/x\n";
        let got = catalog_csv(csv.as_bytes()).expect("imports");
        assert_eq!(got.format, Format::Plain);
        let item = &got.items[0];
        assert_eq!((item.sku.as_str(), item.stock, item.price_cents), ("CAP", 40, 1999));
        assert_eq!(item.aliases, ["hat", "beanie"]);
        assert_eq!(item.checkout_url, "https://buy.stripe.com/x");
    }

    #[test]
    fn missing_columns_are_named() {
        let err = catalog_csv(b"Handle,Title,Variant SKU\nx,X,X-1\n").expect_err("refused");
        assert_eq!(
            err,
            ImportError::Columns("missing column(s): Variant Inventory Qty, Variant Price".into())
        );
        let err = catalog_csv(b"colour,count\nred,1\n").expect_err("refused");
        assert!(err.to_string().contains("not a products export"), "{err}");
    }

    #[test]
    fn bad_rows_refuse_the_whole_file_each_named() {
        let csv = "sku,name,stock,price\nCAP,cap,5,1\ncap,cap again,3,1\nTEE,tee,-2,1\nMUG,mug,1,1.999\nBAD SKU,x,1,1\n";
        let Err(ImportError::Rows(rows)) = catalog_csv(csv.as_bytes()) else {
            panic!("the file must be refused")
        };
        let got: Vec<(u64, &str, &str)> =
            rows.iter().map(|r| (r.line, r.field.as_str(), r.message.as_str())).collect();
        assert_eq!(got[0], (3, "sku", "cap repeats line 2"));
        assert_eq!(got[1], (4, "stock", "stock cannot be negative (-2)"));
        assert_eq!((got[2].0, got[2].1), (5, "price"));
        assert_eq!((got[3].0, got[3].1), (6, "sku"));
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn variants_without_a_sku_or_inventory_are_skipped_with_the_reason() {
        let csv = "Handle,Title,Option1 Value,Variant SKU,Variant Price,Variant Inventory Qty\n\
a,A,S,,10,3\nb,B,S,B-1,10,\n";
        let err = catalog_csv(csv.as_bytes()).expect_err("nothing to import");
        let ImportError::Empty(skipped) = err else { panic!("{err:?}") };
        assert!(skipped[0].message.contains("without a SKU"), "{skipped:?}");
        assert!(skipped[1].message.contains("no inventory quantity"), "{skipped:?}");
    }

    #[test]
    fn prices_parse_to_cents_exactly() {
        assert_eq!(cents("29.99"), Ok(2999));
        assert_eq!(cents("30"), Ok(3000));
        assert_eq!(cents("30.5"), Ok(3050));
        assert_eq!(cents(""), Ok(0));
        assert!(cents("-1").is_err());
        assert!(cents("1,50").is_err());
        assert!(cents("1.505").is_err());
    }
}
