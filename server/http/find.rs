//! `POST /tools/find`, `POST /tools/lookup` and `GET /changes`: queries answered from the index.

use std::collections::HashMap;

use axum::Json;
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::index::{FindError, FindRequest, Level, OrderBy, OrderKey};

/// Most changes one `/changes` call returns.
const MAX_CHANGES: u32 = 10_000;

/// `POST /tools/find`, with Orthanc's body.
pub async fn find(state: AppState, body: Value) -> Result<Json<Value>, ApiError> {
    let (request, expand) = parse_find(&body)?;
    let found = state
        .index
        .find(&request, expand)
        .await
        .map_err(|e| match e {
            FindError::Invalid(message) => ApiError::bad_request(message),
            FindError::Index(e) => ApiError::index(e),
        })?;
    if !expand {
        return Ok(Json(json!(
            found.iter().map(|f| &f.resource.id).collect::<Vec<_>>()
        )));
    }
    let answers = found
        .iter()
        .map(|f| {
            let mut body = state.resource_json(&f.resource);
            if !request.requested_tags.is_empty() {
                let mut requested = Map::new();
                for name in &request.requested_tags {
                    let value = f.computed.get(name).map(|v| json!(v)).or_else(|| {
                        f.resource.main_tags.get(name).cloned().or_else(|| {
                            f.resource
                                .patient_tags
                                .as_ref()
                                .and_then(|tags| tags.get(name).cloned())
                        })
                    });
                    if let Some(value) = value {
                        requested.insert(name.clone(), value);
                    }
                }
                body["RequestedTags"] = Value::Object(requested);
            }
            body
        })
        .collect();
    Ok(Json(Value::Array(answers)))
}

/// Reads Orthanc's `/tools/find` body. Returns the request and whether to expand.
pub(crate) fn parse_find(body: &Value) -> Result<(FindRequest, bool), ApiError> {
    let bad = |message: String| ApiError::bad_request(message);
    let object = body
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object".into()))?;
    let level = object
        .get("Level")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Level is required: Patient, Study, Series or Instance".into()))?;
    let level = Level::from_name(level).ok_or_else(|| bad(format!("unknown Level {level:?}")))?;

    let mut query = Vec::new();
    match object.get("Query") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (tag, pattern) in map {
                let pattern = pattern
                    .as_str()
                    .ok_or_else(|| bad(format!("Query.{tag} must be a string")))?;
                query.push((tag.clone(), pattern.to_string()));
            }
        }
        Some(_) => return Err(bad("Query must be an object".into())),
    }

    let flag = |key: &str, default: bool| -> Result<bool, ApiError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(format!("{key} must be true or false"))),
        }
    };
    let count = |key: &str| -> Result<Option<u64>, ApiError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(format!("{key} must be a non-negative integer"))),
        }
    };

    let mut order_by = Vec::new();
    if let Some(items) = object.get("OrderBy") {
        let items = items
            .as_array()
            .ok_or_else(|| bad("OrderBy must be an array".into()))?;
        for item in items {
            let text = |key: &str| item.get(key).and_then(Value::as_str);
            let key = text("Key").ok_or_else(|| bad("each OrderBy needs a Key".into()))?;
            let key = match text("Type").unwrap_or("DicomTag") {
                "DicomTag" => OrderKey::Tag(key.to_string()),
                "Metadata" if key == "LastUpdate" => OrderKey::LastUpdate,
                "Metadata" => {
                    return Err(bad(format!(
                        "ordering by metadata {key:?} is not supported; LastUpdate is"
                    )));
                }
                other => return Err(bad(format!("unknown OrderBy Type {other:?}"))),
            };
            let descending = match text("Direction").unwrap_or("ASC") {
                d if d.eq_ignore_ascii_case("ASC") => false,
                d if d.eq_ignore_ascii_case("DESC") => true,
                other => {
                    return Err(bad(format!(
                        "OrderBy Direction must be ASC or DESC, not {other:?}"
                    )));
                }
            };
            order_by.push(OrderBy { key, descending });
        }
    }

    let mut parent = None;
    for ancestor in [Level::Patient, Level::Study, Level::Series] {
        let key = format!("Parent{}", ancestor.name());
        if let Some(id) = object.get(&key) {
            let id = id
                .as_str()
                .ok_or_else(|| bad(format!("{key} must be a string")))?;
            parent = Some((ancestor, id.to_string()));
        }
    }

    let requested_tags = match object.get("RequestedTags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("RequestedTags must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("RequestedTags must be an array".into())),
    };

    if object
        .get("Labels")
        .and_then(Value::as_array)
        .is_some_and(|labels| !labels.is_empty())
    {
        return Err(bad("labels are not supported yet".into()));
    }

    let request = FindRequest {
        level,
        query,
        case_sensitive: flag("CaseSensitive", false)?,
        names_any_case: false,
        since: count("Since")?.unwrap_or(0),
        // 0 means no limit, as in Orthanc.
        limit: count("Limit")?.filter(|limit| *limit > 0),
        order_by,
        parent,
        requested_tags,
    };
    Ok((request, flag("Expand", false)?))
}

/// `POST /tools/lookup`: the body is a bare UID (or PatientID).
pub async fn lookup(state: AppState, body: String) -> Result<Json<Value>, ApiError> {
    let uid = body.trim();
    if uid.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the identifier to look up",
        ));
    }
    let found = state.index.lookup(uid).await.map_err(ApiError::index)?;
    Ok(Json(Value::Array(
        found
            .into_iter()
            .map(|(level, id)| json!({ "ID": id, "Path": level.path(&id), "Type": level.name() }))
            .collect(),
    )))
}

/// `GET /changes?since=&limit=`.
pub async fn changes(
    state: AppState,
    args: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let number = |key: &str, default: i64| -> Result<i64, ApiError> {
        args.get(key).map_or(Ok(default), |v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("{key} must be a non-negative integer"))
            })
        })
    };
    let since = number("since", 0)?;
    let limit = number("limit", 100)?.clamp(0, i64::from(MAX_CHANGES)) as u32;
    let page = state
        .index
        .changes(since, limit)
        .await
        .map_err(ApiError::index)?;
    let changes: Vec<Value> = page
        .changes
        .iter()
        .map(|c| {
            let path = Level::from_name(&c.resource_type)
                .map(|l| l.path(&c.resource_id))
                .unwrap_or_default();
            json!({
                "ChangeType": c.change_type,
                "Date": c.date,
                "ID": c.resource_id,
                "Path": path,
                "ResourceType": c.resource_type,
                "Seq": c.seq,
            })
        })
        .collect();
    Ok(Json(
        json!({ "Changes": changes, "Done": page.done, "Last": page.last }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_bodies_parse_as_orthanc_documents_them() {
        let (request, expand) = parse_find(&json!({
            "Level": "study",
            "Query": {"PatientName": "DOE*", "StudyDate": "20200101-"},
            "Expand": true, "Limit": 10, "Since": 5,
            "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate", "Direction": "DESC"}],
        }))
        .unwrap();
        assert!(expand);
        assert_eq!(request.level, Level::Study);
        assert_eq!(request.query.len(), 2);
        assert_eq!((request.since, request.limit), (5, Some(10)));
        assert!(request.order_by[0].descending);
        assert!(!request.case_sensitive);
    }

    #[test]
    fn bad_find_bodies_are_refused() {
        for body in [
            json!([]),
            json!({}),
            json!({"Level": "Galaxy"}),
            json!({"Level": "Study", "Query": {"PatientName": 3}}),
            json!({"Level": "Study", "Limit": -1}),
            json!({"Level": "Study", "OrderBy": [{"Key": "StudyDate", "Direction": "UP"}]}),
        ] {
            assert!(parse_find(&body).is_err(), "{body} accepted");
        }
    }
}
