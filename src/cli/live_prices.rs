//! Live prices from a cloud's pricing API, for `gpupool prices --live`: the
//! refreshers of the cloud crates built into this binary.

use gpupool::config::CloudKind;
use gpupool_cloud::Price;

/// The prices of every built-in instance type of `cloud` in `region`, and a
/// line saying where they came from.
pub fn fetch(
    cloud: CloudKind,
    region: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<(Vec<Price>, String)> {
    let types: Vec<String> = gpupool::catalog::builtin(cloud)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let runtime = super::client::runtime()?;
    match cloud {
        #[cfg(feature = "azure")]
        CloudKind::Azure => {
            use gpupool_cloud::PriceSource;
            let endpoint = endpoint.unwrap_or(gpupool_azure::pricing::ENDPOINT);
            let api = gpupool_azure::RetailPrices::new(endpoint, region)?;
            let prices = runtime.block_on(api.prices(&types))?;
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            Ok((
                prices,
                format!("live from the Azure Retail Prices API ({endpoint}) at {at}"),
            ))
        }
        #[cfg(feature = "aws")]
        CloudKind::Aws => {
            use gpupool_cloud::PriceSource;
            // A test endpoint takes static credentials; AWS itself the
            // standard chain (env, profile, SSO, IRSA, Pod Identity, IMDS).
            let connection = gpupool_aws::sdk::Connection {
                endpoint: endpoint.map(str::to_owned),
                static_credentials: endpoint.is_some(),
                no_retries: false,
            };
            let prices = runtime.block_on(async {
                let api = gpupool_aws::AwsPrices::connect(&connection, region).await;
                api.prices(&types).await
            })?;
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let from = endpoint.unwrap_or("AWS");
            Ok((
                prices,
                format!(
                    "live from the AWS Price List API and EC2 spot price history ({from}) at {at}; \
                     spot is the dearest zone's"
                ),
            ))
        }
        #[cfg(feature = "gcp")]
        CloudKind::Gcp => {
            use gpupool_cloud::PriceSource;
            let shapes = gpupool::catalog::builtin(cloud)
                .into_iter()
                .filter_map(|t| {
                    let gpus = t.gpu.as_ref().map_or(0, |g| g.count);
                    let gib = t.memory_mib as f64 / 1024.0;
                    gpupool_gcp::MachineShape::bundled(&t.name, t.vcpus, gib, gpus)
                })
                .collect();
            let prices = runtime.block_on(async {
                let api = gpupool_gcp::CatalogPrices::connect(endpoint, region, shapes).await?;
                api.prices(&types).await
            })?;
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let from = endpoint.unwrap_or("cloudbilling.googleapis.com");
            Ok((
                prices,
                format!(
                    "live from the Cloud Billing Catalog ({from}) at {at}: \
                     vCPU + RAM + GPU + bundled Local SSD SKUs"
                ),
            ))
        }
        other => {
            let _ = (region, endpoint, types, runtime);
            anyhow::bail!(
                "this build has no live pricing client for {}: build gpupool with `--features {}`",
                other.as_str(),
                other.as_str()
            )
        }
    }
}
