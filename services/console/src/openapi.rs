//! The OpenAPI document of the HTTP API, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Dropline console API", description = "Drops, holds, markers, clips and the live view. \
        Every call needs `Authorization: Bearer <token>` (or `?access_token=` where a browser cannot set headers)."),
    paths(
        crate::drops::create, crate::import::catalog, crate::drops::list, crate::drops::get, crate::drops::update, crate::drops::open, crate::drops::close,
        crate::drops::restock, crate::drops::confirm, crate::drops::cancel, crate::drops::marker,
        crate::report::report, crate::report::buyers_csv, crate::report::report_csv, crate::live::stream,
        crate::claims::get, crate::claims::events, crate::claims::pay, crate::claims::cancel,
        crate::overlay::get, crate::overlay::stream,
        crate::clips::list, crate::clips::get, crate::clips::video, crate::clips::thumbnail, crate::clips::vertical,
    ),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
