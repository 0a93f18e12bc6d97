//! The OpenAPI document of the HTTP API, generated from the handlers' annotations.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, RefOr, Response, ResponseBuilder, Schema, Type};
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
        crate::clips::list, crate::clips::get, crate::clips::video, crate::clips::thumbnail, crate::clips::vertical, crate::bundle::download,
    ),
    modifiers(&Bearer, &Refusals),
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

/// Every refusal the API answers, documented on each operation it can come from, with the body
/// every refusal has (`{"error": "<what was wrong>"}`, `crate::error::ApiError`): 401 and 403
/// (token, role) and 429 and 503 (write budget, dependencies) everywhere, 404 where a path names
/// something, 400, 413, 415 and 422 where a body or query is read.
struct Refusals;

impl Refusals {
    fn error_response(description: &str) -> Response {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "error",
                ObjectBuilder::new().schema_type(Type::String).description(Some("what was wrong")),
            )
            .required("error");
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Schema::Object(schema.build()))).build(),
            )
            .build()
    }

    fn document(operation: &mut Operation, takes_body: bool) {
        let params = operation.parameters.as_deref().unwrap_or_default();
        let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
        let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
        let mut statuses = vec![
            ("401", "no token, or not one of this console's"),
            ("403", "the token's role may not do this"),
            ("429", "the token's write budget is spent for now; retry"),
            ("503", "Redis or the broker is unreachable, or the data is still being read; retry"),
        ];
        if has_path {
            statuses.push(("404", "nothing by that id"));
        }
        if takes_body || has_query || has_path {
            statuses.push(("400", "a field is invalid; the message names it"));
        }
        if takes_body {
            statuses.push(("413", "the body is larger than the API takes"));
            statuses.push(("415", "the body is not application/json"));
            statuses.push(("422", "the body is JSON of the wrong shape; the message names the field"));
        }
        for (status, description) in statuses {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::T(Self::error_response(description)));
        }
        // Refusals documented by a handler keep their description and gain the body.
        for (status, response) in &mut operation.responses.responses {
            let refusal = status.starts_with('4') || status.starts_with('5');
            if let (true, RefOr::T(response)) = (refusal, response) {
                if response.content.is_empty() {
                    let description = response.description.clone();
                    *response = Self::error_response(&description);
                }
            }
        }
    }
}

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.head,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                // Only an operation that reads a body can refuse one (a bodiless POST ignores it).
                let takes_body = operation.request_body.is_some();
                Self::document(operation, takes_body);
            }
        }
    }
}
