//! The OpenAPI document, assembled from the routers' annotations, and the
//! router it describes.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Fanout API", description = "An eventually consistent social feed."),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Sign-up, profiles and the follow graph"),
        (name = "auth", description = "Tokens"),
        (name = "posts", description = "Posts and likes"),
        (name = "feed", description = "The home feed"),
        (name = "ops", description = "Health, metrics and debugging"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Makes the error responses say what the API does: problems are
/// `application/problem+json`; every write may be rate limited (429) and
/// everything that reads data may find a dependency down (503), both with
/// `Retry-After`; `/debug/*` may want a token (401).
struct Problems;

/// Routes that touch neither PostgreSQL nor Redis.
const NO_DEPENDENCIES: &[&str] = &["/healthz", "/metrics"];

fn problem(description: &str, retry_after: bool) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    response.build()
}

const PROBLEM_JSON: &str = "application/problem+json";

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (write, operation) in operations {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if let Some(body) = response.content.shift_remove("application/json") {
                        let is_problem = matches!(&body, RefOr::T(c)
                            if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")));
                        let key = if is_problem {
                            PROBLEM_JSON
                        } else {
                            "application/json"
                        };
                        response.content.insert(key.to_owned(), body);
                    }
                    if response.description.is_empty() {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason());
                        response.description = reason.unwrap_or("Response").to_owned();
                    }
                }
                if write {
                    responses.entry("429".into()).or_insert_with(|| {
                        problem("Over a rate limit; see Retry-After", true).into()
                    });
                }
                if !NO_DEPENDENCIES.contains(&path.as_str()) {
                    responses.entry("503".into()).or_insert_with(|| {
                        problem("PostgreSQL or Redis is unavailable; see Retry-After", true).into()
                    });
                }
                if path.starts_with("/debug/") {
                    responses.entry("401".into()).or_insert_with(|| {
                        problem("FANOUT_DEBUG_TOKEN is set and was not presented", false).into()
                    });
                }
            }
        }
    }
}

/// Every route with its documentation; `/debug/*` only when enabled.
pub fn api(debug_endpoints: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::users::router())
        .merge(routes::auth::router())
        .merge(routes::posts::router())
        .merge(routes::feed::router())
        .merge(routes::ops::router());
    let mut router = if debug_endpoints {
        router.merge(routes::ops::debug_router())
    } else {
        router
    };
    // After the merges: the routes' operations are what it amends.
    Problems.modify(router.get_openapi_mut());
    router
}

/// The OpenAPI document as published at `/openapi.json` (with every route).
pub fn document() -> utoipa::openapi::OpenApi {
    api(true).into_openapi()
}
