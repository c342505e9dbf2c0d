//! The live catalog: DescribeInstanceTypes, every type with GPUs (and every
//! type a group names), with vCPUs, memory, architecture and GPU details.

use super::Ec2Cloud;
use crate::errors::classify;
use aws_sdk_ec2::types::{ArchitectureType, InstanceTypeInfo};
use gpupool_cloud::{Arch, CloudError, GpuInfo, InstanceType};

/// Pages at most (the region's ~1,000 types come in pages of 100).
const MAX_PAGES: usize = 50;

impl Ec2Cloud {
    pub(super) async fn catalog(&self) -> Result<Vec<InstanceType>, CloudError> {
        let named = self.named_types();
        let mut types = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            self.limits.describe.until_ready().await;
            let page = self
                .client
                .describe_instance_types()
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeInstanceTypes", e))?;
            types.extend(page.instance_types().iter().filter_map(|t| {
                let name = t.instance_type()?.as_str();
                (t.gpu_info().is_some() || named.contains(name))
                    .then(|| instance_type(t))
                    .flatten()
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(types),
            }
        }
        Err(CloudError::other(
            "TooManyPages",
            format!("DescribeInstanceTypes kept paging after {MAX_PAGES} pages"),
        ))
    }
}

/// One type as gpupool's catalog holds it; `None` without vCPUs or memory.
pub fn instance_type(t: &InstanceTypeInfo) -> Option<InstanceType> {
    let name = t.instance_type()?.as_str().to_owned();
    let vcpus = u32::try_from(t.v_cpu_info()?.default_v_cpus()?).ok()?;
    let memory_mib = u64::try_from(t.memory_info()?.size_in_mib()?).ok()?;
    let arch = match t
        .processor_info()
        .map(|p| p.supported_architectures())
        .unwrap_or_default()
    {
        a if a.contains(&ArchitectureType::X8664) => Arch::Amd64,
        a if a.contains(&ArchitectureType::Arm64) => Arch::Arm64,
        _ => Arch::Amd64,
    };
    let gpu = t.gpu_info().and_then(|g| {
        let first = g.gpus().first()?;
        let model = first.name()?.to_owned();
        let count: i32 = g.gpus().iter().filter_map(|d| d.count()).sum();
        let memory_mib = u64::try_from(first.memory_info()?.size_in_mib()?).ok()?;
        let manufacturer = first.manufacturer().unwrap_or("NVIDIA");
        Some(GpuInfo {
            accelerator: accelerator_label(manufacturer, &model, memory_mib),
            product: product_name(manufacturer, &model, memory_mib),
            model,
            count: u32::try_from(count).ok()?,
            memory_mib,
        })
    });
    Some(InstanceType {
        name,
        vcpus,
        memory_mib,
        arch,
        gpu,
    })
}

/// The GPU label value for a GPU EC2 describes, e.g. `nvidia-h100-80gb`
/// (gpupool's built-in catalog holds the curated names; this is for
/// types it does not know).
pub fn accelerator_label(manufacturer: &str, model: &str, memory_mib: u64) -> String {
    let gb = (memory_mib + 512) / 1024;
    format!(
        "{}-{}-{gb}gb",
        manufacturer.to_ascii_lowercase(),
        model.to_ascii_lowercase().replace(' ', "-")
    )
}

/// What GPU feature discovery would write to `nvidia.com/gpu.product`,
/// approximately: `NVIDIA-H100-80GB-HBM3` cannot be told from EC2's data,
/// so the memory stands in for the variant.
fn product_name(manufacturer: &str, model: &str, memory_mib: u64) -> String {
    let gb = (memory_mib + 512) / 1024;
    format!("{manufacturer}-{}-{gb}GB", model.replace(' ', "-"))
}
