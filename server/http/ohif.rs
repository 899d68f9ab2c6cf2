//! The OHIF viewer at `/ohif/` (`ohif_dir`: a built viewer, npm's `@ohif/app` `dist/`): its
//! files as they are, but `index.html` moved under `/ohif/` (the build expects the site's
//! root) and `app-config.js` written here, with this server's DICOMweb as the only data source
//! (same origin: the UI's session cookie is sent, no CORS). Its files hold no patient data and
//! are served without credentials, as the UI's are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use super::AppState;

/// Where the viewer is served.
const ROOT: &str = "/ohif";

/// OHIF needs inline script (its `index.html`), WebAssembly and workers from `blob:` URLs
/// (the image decoders), and inline styles: a policy of its own, still same-origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:; \
     worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
     font-src 'self' data:; connect-src 'self' data: blob:; media-src 'self' blob:; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'";

/// The configuration the viewer reads: this server's DICOMweb, found from the page's origin.
const APP_CONFIG: &str = r#"// Written by Orthweb: this server's DICOMweb is the viewer's only data source.
window.config = {
  routerBasename: '/ohif',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  defaultDataSourceName: 'orthweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthweb',
      configuration: {
        friendlyName: 'Orthweb',
        name: 'orthweb',
        wadoUriRoot: window.location.origin + '/wado',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"#;

/// The viewer's routes, or none when `ohif_dir` is not set (or its `index.html` cannot be read:
/// the settings' check says why at start-up).
pub fn routes(dir: &str) -> Router<AppState> {
    if dir.is_empty() {
        return Router::new();
    }
    let dir = PathBuf::from(dir);
    let index = match shell(&dir) {
        Ok(index) => index,
        Err(e) => {
            tracing::error!(error = %e, "the OHIF viewer is not served");
            return Router::new();
        }
    };
    let viewer = Arc::new(Viewer {
        files: ServeDir::new(&dir)
            .append_index_html_on_directories(false)
            .precompressed_gzip(),
        dir,
        index,
    });
    let (root, slash) = (viewer.clone(), viewer.clone());
    Router::new()
        .route(ROOT, get(move || std::future::ready(root.page())))
        .route("/ohif/", get(move || std::future::ready(slash.page())))
        .route(
            "/ohif/{*path}",
            get(move |UrlPath(path): UrlPath<String>, request: Request| {
                let viewer = viewer.clone();
                async move { viewer.serve(&path, request).await }
            }),
        )
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
}

/// The viewer's folder and its page.
struct Viewer {
    dir: PathBuf,
    files: ServeDir,
    /// `index.html`, its URLs under `/ohif/`.
    index: String,
}

impl Viewer {
    fn page(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            self.index.clone(),
        )
            .into_response()
    }

    /// `/ohif/{path}`: the configuration, a script whose public path is moved, a file of the
    /// build, or else a page of the viewer (`/ohif/viewer?StudyInstanceUIDs=…`).
    async fn serve(&self, path: &str, request: Request) -> Response {
        match path {
            "" | "index.html" => return self.page(),
            "app-config.js" => {
                return (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    APP_CONFIG,
                )
                    .into_response();
            }
            _ => {}
        }
        if path.contains(".bundle.")
            && path.ends_with(".js")
            && let Some(response) = script(&self.dir, path).await
        {
            return response;
        }
        // The folder's own path for the file server.
        let (mut parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        match format!("/{path}{query}").parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return self.page(),
        }
        let request = Request::from_parts(parts, body);
        match self.files.clone().oneshot(request).await {
            // A path without an extension is a page of the viewer, not a file.
            Ok(response)
                if response.status() == StatusCode::NOT_FOUND
                    && !path.rsplit('/').next().unwrap_or("").contains('.') =>
            {
                self.page()
            }
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        }
    }
}

/// What a script of the build sets webpack's public path to: the site's root, fixed when it
/// was built. Its chunk loaders (the page's, and each worker's) look for the other scripts
/// there; served under `/ohif/`, they must look there instead.
const PUBLIC_PATH: &str = "__webpack_require__.p = \"/\";";

/// The bundle `name` with its public path moved under `/ohif/`; `None` for a file that is not
/// there or sets none (served as it is).
async fn script(dir: &Path, name: &str) -> Option<Response> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let text = tokio::fs::read_to_string(dir.join(name)).await.ok()?;
    if !text.contains(PUBLIC_PATH) {
        return None;
    }
    let text = text.replace(PUBLIC_PATH, "__webpack_require__.p = \"/ohif/\";");
    Some(
        (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                // Bundle names carry a hash of their content.
                (header::CACHE_CONTROL, "public, max-age=604800"),
            ],
            text,
        )
            .into_response(),
    )
}

/// The build's `index.html` with its root-relative URLs moved under `/ohif/`.
pub fn shell(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("index.html");
    let html = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "ohif_dir: cannot read {} ({e}); it must be a built OHIF viewer (npm's @ohif/app dist/)",
            path.display()
        )
    })?;
    Ok(html
        .replace("window.PUBLIC_URL=\"/\"", "window.PUBLIC_URL=\"/ohif/\"")
        .replace("src=\"/", "src=\"/ohif/")
        .replace("href=\"/", "href=\"/ohif/")
        .replace("content=\"/", "content=\"/ohif/"))
}
