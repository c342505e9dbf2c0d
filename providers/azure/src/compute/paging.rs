//! Resource Manager's paged lists (`value` and `nextLink`, followed by the
//! SDK's `Pageable`) read whole: each page rate-limited, every page's error
//! classified, and a bound against a server that never stops linking.

use super::Limits;
use super::errors::classify;
use futures_util::{Stream, StreamExt};
use gpupool_cloud::CloudError;

/// Every page of `pages`, at most `max_pages` of them.
pub(super) async fn all<P>(
    what: &str,
    limits: &Limits,
    max_pages: usize,
    pages: impl Stream<Item = azure_core::Result<P>>,
) -> Result<Vec<P>, CloudError> {
    let mut pages = std::pin::pin!(pages);
    let mut out = Vec::new();
    loop {
        limits.read.until_ready().await;
        let Some(page) = pages.next().await else {
            return Ok(out);
        };
        if out.len() == max_pages {
            return Err(CloudError::other(
                "TooManyPages",
                format!("{what}: more than {max_pages} pages"),
            ));
        }
        out.push(page.map_err(|e| classify(what, &e))?);
    }
}
