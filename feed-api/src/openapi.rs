//! The OpenAPI document, assembled from the routers' annotations, and the
//! router it describes.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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

/// Every route with its documentation; `/debug/*` only when enabled.
pub fn api(debug_endpoints: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::users::router())
        .merge(routes::auth::router())
        .merge(routes::posts::router())
        .merge(routes::feed::router())
        .merge(routes::ops::router());
    if debug_endpoints {
        router.merge(routes::ops::debug_router())
    } else {
        router
    }
}

/// The OpenAPI document as published at `/openapi.json` (with every route).
pub fn document() -> utoipa::openapi::OpenApi {
    api(true).into_openapi()
}
