//! Compute Engine's list calls page with `pageToken` / `nextPageToken`:
//! every page read, with a bound so a server that keeps paging cannot keep
//! gpupool looping.

use gpupool_cloud::CloudError;

/// Pages read at most.
const MAX_PAGES: usize = 100;

/// Every item of `what`: `page(token)` reads one page (the first with an
/// empty token) and gives its items and the next page's token.
pub(super) async fn all<T, F, Fut>(what: &str, mut page: F) -> Result<Vec<T>, CloudError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let (items, next) = page(token).await?;
        out.extend(items);
        match next {
            Some(t) if !t.is_empty() => token = t,
            _ => return Ok(out),
        }
    }
    Err(CloudError::other(
        "TooManyPages",
        format!("{what} kept paging after {MAX_PAGES} pages"),
    ))
}
