//! The resource routes: `/{level}`, `/{level}/{id}` and its sub-routes, and `DELETE`, with
//! Orthanc's JSON shapes.

use std::collections::HashMap;

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::PrimitiveDateTime;
use time::macros::format_description;

use super::{ApiError, AppState};
use crate::index::{Level, Resource, StoredFile};

/// Query arguments of the list routes, as Orthanc reads them.
pub struct ListArgs {
    pub expand: bool,
    pub since: u64,
    pub limit: Option<u64>,
}

impl ListArgs {
    pub fn parse(
        args: &HashMap<String, String>,
        expand_by_default: bool,
    ) -> Result<Self, ApiError> {
        let number = |key: &str| -> Result<Option<u64>, ApiError> {
            args.get(key)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("{key} must be a non-negative integer"))
                    })
                })
                .transpose()
        };
        let expand = match args.get("expand").map(String::as_str) {
            None => expand_by_default,
            Some("" | "true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "expand must be true or false, not {other:?}"
                )));
            }
        };
        Ok(ListArgs {
            expand,
            since: number("since")?.unwrap_or(0),
            limit: number("limit")?,
        })
    }
}

/// `GET /{level}`: IDs, or full resources with `?expand`.
pub async fn list(
    state: AppState,
    level: Level,
    args: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let args = ListArgs::parse(&args, false)?;
    if args.expand {
        let resources = state
            .index
            .list_resources(level, args.since, args.limit)
            .await
            .map_err(ApiError::index)?;
        Ok(Json(Value::Array(
            resources.iter().map(|r| state.resource_json(r)).collect(),
        ))
        .into_response())
    } else {
        let ids = state
            .index
            .list_ids_json(level, args.since, args.limit)
            .await
            .map_err(ApiError::index)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], ids).into_response())
    }
}

/// `GET /{level}/{id}`.
pub async fn get(state: AppState, level: Level, id: String) -> Result<Json<Value>, ApiError> {
    let resource = state.resource(level, &id).await?;
    Ok(Json(state.resource_json(&resource)))
}

/// `GET /{level}/{id}/{studies,series,instances}`: full resources below, or IDs with
/// `?expand=false`.
pub async fn descendants(
    state: AppState,
    level: Level,
    below: Level,
    id: String,
    args: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let args = ListArgs::parse(&args, true)?;
    // Unknown IDs are a 404, not an empty list.
    state.resource(level, &id).await?;
    let resources = state
        .index
        .descendants(level, &id, below)
        .await
        .map_err(ApiError::index)?;
    Ok(Json(if args.expand {
        Value::Array(resources.iter().map(|r| state.resource_json(r)).collect())
    } else {
        json!(resources.iter().map(|r| &r.id).collect::<Vec<_>>())
    }))
}

/// `GET /{level}/{id}/{patient,study,series}`.
pub async fn ancestor(
    state: AppState,
    level: Level,
    above: Level,
    id: String,
) -> Result<Json<Value>, ApiError> {
    let resource = state
        .index
        .ancestor(level, &id, above)
        .await
        .map_err(ApiError::index)?
        .ok_or_else(|| unknown(level, &id))?;
    Ok(Json(state.resource_json(&resource)))
}

/// `GET /{level}/{id}/statistics`, as Orthanc's.
pub async fn statistics(
    state: AppState,
    level: Level,
    id: String,
) -> Result<Json<Value>, ApiError> {
    state.resource(level, &id).await?;
    let stats = state
        .index
        .resource_statistics(level, &id)
        .await
        .map_err(ApiError::index)?;
    let size = stats.size.to_string();
    let mb = stats.size / (1024 * 1024);
    let mut body = json!({
        "DiskSize": size, "DiskSizeMB": mb,
        "UncompressedSize": size, "UncompressedSizeMB": mb,
        "DicomDiskSize": size, "DicomDiskSizeMB": mb,
        "DicomUncompressedSize": size, "DicomUncompressedSizeMB": mb,
    });
    let counts = [
        (Level::Study, "CountStudies", stats.studies),
        (Level::Series, "CountSeries", stats.series),
        (Level::Instance, "CountInstances", stats.instances),
    ];
    for (below, key, count) in counts {
        if below > level {
            body[key] = json!(count);
        }
    }
    Ok(Json(body))
}

/// `DELETE /{level}/{id}`: the resource and everything under it, index first, then blobs.
pub async fn delete(state: AppState, level: Level, id: String) -> Result<Json<Value>, ApiError> {
    let deletion = state
        .index
        .delete_resource(level, &id, &crate::ingest::now_orthanc())
        .await
        .map_err(ApiError::index)?
        .ok_or_else(|| unknown(level, &id))?;
    tracing::info!(
        level = level.name(),
        id,
        instances = deletion.blob_keys.len(),
        "deleted"
    );
    // The index no longer points at these blobs; failures leave them queued for the janitor.
    crate::janitor::remove_blobs(&state.index, state.blobs.as_ref(), &deletion.blob_keys).await;
    let remaining = deletion
        .remaining_ancestor
        .map(|(level, id)| json!({ "ID": id, "Path": level.path(&id), "Type": level.name() }));
    Ok(Json(json!({ "RemainingAncestor": remaining })))
}

fn unknown(level: Level, id: &str) -> ApiError {
    ApiError::not_found(format!("no {} with ID {id}", level.name().to_lowercase()))
}

impl AppState {
    /// A resource, or a 404.
    pub async fn resource(&self, level: Level, id: &str) -> Result<Resource, ApiError> {
        self.index
            .resource(level, id)
            .await
            .map_err(ApiError::index)?
            .ok_or_else(|| unknown(level, id))
    }

    /// An instance's stored file, or a 404: for handlers that read the file and nothing
    /// else of the row.
    pub async fn stored_file(&self, id: &str) -> Result<StoredFile, ApiError> {
        self.index
            .stored_file(id)
            .await
            .map_err(ApiError::index)?
            .ok_or_else(|| unknown(Level::Instance, id))
    }

    /// A resource as Orthanc shapes it with `?expand`.
    pub fn resource_json(&self, resource: &Resource) -> Value {
        let mut body = Map::new();
        body.insert("ID".into(), json!(resource.id));
        body.insert("Type".into(), json!(resource.level.name()));
        body.insert(
            "MainDicomTags".into(),
            Value::Object(resource.main_tags.clone()),
        );
        body.insert("Labels".into(), json!([]));
        if let Some(parent) = resource.level.parent() {
            body.insert(format!("Parent{}", parent.name()), json!(resource.parent));
        }
        match resource.level {
            Level::Instance => {
                if let Some(file) = &resource.file {
                    body.insert("FileSize".into(), json!(file.size));
                    body.insert(
                        "FileUuid".into(),
                        json!(file.blob_key.trim_end_matches(".dcm")),
                    );
                }
                body.insert("IndexInSeries".into(), index_in_series(&resource.main_tags));
            }
            level => {
                let children = match level {
                    Level::Patient => "Studies",
                    Level::Study => "Series",
                    _ => "Instances",
                };
                body.insert(children.into(), json!(resource.children));
                body.insert("LastUpdate".into(), json!(resource.last_update));
                body.insert(
                    "IsStable".into(),
                    json!(is_stable(
                        &resource.last_update,
                        self.settings.stable_age_secs
                    )),
                );
            }
        }
        if let Some(patient_tags) = &resource.patient_tags {
            body.insert(
                "PatientMainDicomTags".into(),
                Value::Object(patient_tags.clone()),
            );
        }
        if resource.level == Level::Series {
            // We do not track the expected number of instances (Orthanc knows it only from
            // rarely sent tags), so a series' completeness is unknown, as Orthanc says then.
            body.insert("Status".into(), json!("Unknown"));
            body.insert("ExpectedNumberOfInstances".into(), Value::Null);
        }
        Value::Object(body)
    }
}

/// Orthanc's `IndexInSeries`: the Instance Number, else the Image Index, as a number.
fn index_in_series(tags: &Map<String, Value>) -> Value {
    ["InstanceNumber", "ImageIndex"]
        .iter()
        .find_map(|k| tags.get(*k)?.as_str()?.trim().parse::<u64>().ok())
        .map_or(Value::Null, |n| json!(n))
}

/// Whether nothing arrived under a resource for `stable_age` seconds.
fn is_stable(last_update: &str, stable_age: u64) -> bool {
    let format = format_description!("[year][month][day]T[hour][minute][second]");
    match PrimitiveDateTime::parse(last_update, format) {
        Ok(at) => {
            let age = time::OffsetDateTime::now_utc() - at.assume_utc();
            age.whole_seconds() >= stable_age as i64
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_in_series_prefers_instance_number() {
        let tags: Map<String, Value> =
            serde_json::from_str(r#"{"InstanceNumber":" 12","ImageIndex":"3"}"#).unwrap();
        assert_eq!(index_in_series(&tags), json!(12));
        let tags: Map<String, Value> = serde_json::from_str(r#"{"ImageIndex":"3"}"#).unwrap();
        assert_eq!(index_in_series(&tags), json!(3));
        assert_eq!(index_in_series(&Map::new()), Value::Null);
    }

    #[test]
    fn old_updates_are_stable() {
        assert!(is_stable("20000101T000000", 60));
        assert!(!is_stable(&crate::ingest::now_orthanc(), 60));
    }
}
