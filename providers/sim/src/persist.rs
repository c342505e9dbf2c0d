//! The simulated fleet on disk: JSON, replaced atomically so a crash mid-write
//! leaves the previous state.

use crate::SimError;
use crate::fleet::Fleet;
use std::io::Write;
use std::path::Path;

pub fn load(path: &Path) -> Result<Option<Fleet>, SimError> {
    let err = |reason: String| SimError::StateFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| err(format!("not a simulated fleet: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

pub fn save(path: &Path, fleet: &Fleet) -> Result<(), SimError> {
    let err = |reason: String| SimError::StateFile {
        path: path.display().to_string(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(e.to_string()))?;
    serde_json::to_writer(&mut tmp, fleet).map_err(|e| err(e.to_string()))?;
    tmp.flush().map_err(|e| err(e.to_string()))?;
    tmp.persist(path).map_err(|e| err(e.to_string()))?;
    Ok(())
}
