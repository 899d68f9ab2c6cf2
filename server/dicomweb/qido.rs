//! QIDO-RS searches (PS3.18 10.6): the query parameters turned into the index's find (the
//! matching `/tools/find` and C-FIND use), each match answered in DICOM JSON with the main tags
//! of its level and those above, the computed counts, its RetrieveURL, and at instance level
//! the attributes kept in its metadata (Rows, Columns, … and any `includefield`).

use std::collections::{BTreeMap, HashSet};

use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use serde_json::Value;

use super::{DICOM_JSON, base_url, content_type, json, resource_url};
use crate::http::{ApiError, AppState};
use crate::index::{AncestorTags, FindError, FindRequest, Level, UidPath};
use crate::main_tags;

/// Most matches one search answers, whatever `limit` asks (a Warning says so).
const MAX_RESULTS: u64 = 10_000;

/// Attributes of an instance's metadata every instance-level answer holds (PS3.18 Table
/// 10.6.3-5 beside the main tags).
const INSTANCE_DEFAULTS: [Tag; 4] = [
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
];

/// The counts and lists the index computes, by level.
fn computed(level: Level) -> &'static [(&'static str, Tag)] {
    match level {
        Level::Study => &[
            ("ModalitiesInStudy", tags::MODALITIES_IN_STUDY),
            (
                "NumberOfStudyRelatedSeries",
                tags::NUMBER_OF_STUDY_RELATED_SERIES,
            ),
            (
                "NumberOfStudyRelatedInstances",
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            ),
        ],
        Level::Series => &[(
            "NumberOfSeriesRelatedInstances",
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        )],
        _ => &[],
    }
}

/// A search as its parameters ask.
struct Search {
    request: FindRequest,
    /// `includefield` tags; `all` as `None` in `include_all`.
    include: HashSet<Tag>,
    include_all: bool,
    /// What was asked but is not done, for the Warning header.
    warnings: Vec<String>,
}

fn parse(level: Level, scope: &UidPath, query: &RawQuery) -> Result<Search, ApiError> {
    let mut matches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut search = Search {
        request: FindRequest {
            level,
            query: Vec::new(),
            // Text as written (PS3.4 C.2.2.2.1), person names whatever their case (as dcmtk
            // and Orthanc; `fuzzymatching` asks no more of us).
            case_sensitive: true,
            names_any_case: true,
            since: 0,
            limit: Some(MAX_RESULTS),
            order_by: Vec::new(),
            parent: None,
            requested_tags: computed(level).iter().map(|(n, _)| n.to_string()).collect(),
        },
        include: HashSet::new(),
        include_all: false,
        warnings: Vec::new(),
    };
    let pairs = url::form_urlencoded::parse(query.0.as_deref().unwrap_or("").as_bytes());
    for (key, value) in pairs {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{what} must be a whole number")))
        };
        match key.as_ref() {
            "limit" => {
                let limit = number("limit")?;
                if limit > MAX_RESULTS {
                    search
                        .warnings
                        .push(format!("limit is at most {MAX_RESULTS}"));
                }
                search.request.limit = Some(limit.min(MAX_RESULTS));
            }
            "offset" => search.request.since = number("offset")?,
            "fuzzymatching" => {}
            "includefield" => {
                for field in value.split(',').map(str::trim) {
                    if field == "all" {
                        search.include_all = true;
                    } else {
                        match tag_of(field) {
                            Some((tag, _)) => {
                                search.include.insert(tag);
                            }
                            None => search
                                .warnings
                                .push(format!("unknown attribute {field} in includefield")),
                        }
                    }
                }
            }
            attribute => {
                let Some((_, keyword)) = tag_of(attribute) else {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter or attribute {attribute}"
                    )));
                };
                let matchable = main_tags::level_of(&keyword).is_some_and(|l| l <= level)
                    || (keyword == "ModalitiesInStudy" && level == Level::Study);
                if !matchable {
                    search.warnings.push(format!(
                        "{keyword} is not matched at this level; it was ignored"
                    ));
                    continue;
                }
                // UID lists are comma-separated in QIDO (PS3.18 8.3.4.1), `\` in the index.
                let value = if main_tags::is_uid(&keyword) {
                    value.replace(',', "\\")
                } else {
                    value.into_owned()
                };
                matches.entry(keyword).or_default().push(value);
            }
        }
    }
    if !scope.study.is_empty() {
        matches.insert("StudyInstanceUID".into(), vec![scope.study.clone()]);
    }
    if let Some(series) = &scope.series {
        matches.insert("SeriesInstanceUID".into(), vec![series.clone()]);
    }
    search.request.query = matches
        .into_iter()
        .map(|(keyword, values)| (keyword, values.join("\\")))
        .collect();
    Ok(search)
}

/// A query key or `includefield` entry, a keyword or `GGGGEEEE`, as its tag and keyword.
fn tag_of(key: &str) -> Option<(Tag, String)> {
    let entry = match json::parse_tag(key) {
        Some(tag) => StandardDataDictionary.by_tag(tag)?,
        None => StandardDataDictionary.by_name(key)?,
    };
    let tag = entry.tag_range().inner();
    Some((tag, entry.alias().to_string()))
}

/// `GET /dicom-web/studies`, `/series`, `/instances` and those under a study or series.
pub async fn search(
    state: AppState,
    level: Level,
    scope: UidPath,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let search = parse(level, &scope, &query)?;
    let found = match state.index.find(&search.request, true).await {
        Ok(found) => found,
        Err(FindError::Invalid(message)) => return Err(ApiError::bad_request(message)),
        Err(FindError::Index(e)) => return Err(ApiError::index(e)),
    };
    let base = base_url(&state, &headers);
    // At instance level, the attributes of the stored metadata, for the whole page at once.
    let metadata = if level == Level::Instance && !found.is_empty() {
        let ids: Vec<&str> = found.iter().map(|f| f.resource.id.as_str()).collect();
        state
            .index
            .metadata_of(&ids)
            .await
            .map_err(ApiError::index)?
    } else {
        Default::default()
    };
    let mut ancestors = AncestorTags::new(&state.index);
    let mut answers = Vec::with_capacity(found.len());
    for found in &found {
        let mut object = InMemDicomObject::new_empty();
        let mut levels = vec![Level::Patient, Level::Study, Level::Series, Level::Instance];
        levels.retain(|l| *l <= level);
        let mut uids = BTreeMap::new();
        for tag_level in levels {
            let tags = ancestors
                .of(&found.resource, tag_level)
                .await
                .map_err(ApiError::index)?;
            for (tag, keyword) in main_tags::of_level(tag_level) {
                if let Some(value) = tags.get(*keyword).and_then(Value::as_str) {
                    put(&mut object, *tag, value.split('\\'));
                    uids.insert(*keyword, value.to_string());
                }
            }
        }
        for (name, tag) in computed(level) {
            if let Some(value) = found.computed.get(*name) {
                put(&mut object, *tag, value.split(','));
            }
        }
        let url = retrieve_url(&base, level, &uids);
        put(&mut object, tags::RETRIEVE_URL, [url.as_str()]);
        let mut answer = parse_object(&json::dataset(&object, None));
        if let Some(stored) = metadata.get(&found.resource.id) {
            let instance_url = url.clone();
            let stored = parse_object(&json::absolute(stored, &instance_url));
            for (key, value) in stored {
                let wanted = search.include_all
                    || json::parse_tag(&key).is_some_and(|t| {
                        INSTANCE_DEFAULTS.contains(&t) || search.include.contains(&t)
                    });
                if wanted {
                    answer.entry(key).or_insert(value);
                }
            }
        }
        answers.push(answer);
    }
    let body = serde_json::to_vec(&answers).map_err(ApiError::internal)?;
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type(DICOM_JSON))],
        body,
    )
        .into_response();
    if !search.warnings.is_empty() {
        let text = search.warnings.join("; ").replace('"', "'");
        if let Ok(value) = HeaderValue::from_str(&format!("299 orthweb \"{text}\"")) {
            response.headers_mut().insert(header::WARNING, value);
        }
    }
    Ok(response)
}

/// The WADO-RS URL of a match, from the UIDs of its level and those above.
fn retrieve_url(base: &str, level: Level, uids: &BTreeMap<&str, String>) -> String {
    let get = |keyword: &str| uids.get(keyword).map(String::as_str).unwrap_or("");
    let study = get("StudyInstanceUID");
    match level {
        Level::Patient | Level::Study => resource_url(base, study, None, None),
        Level::Series => resource_url(base, study, Some(get("SeriesInstanceUID")), None),
        Level::Instance => resource_url(
            base,
            study,
            Some(get("SeriesInstanceUID")),
            Some(get("SOPInstanceUID")),
        ),
    }
}

/// Puts `values` (text) as `tag` with the dictionary's VR; the JSON writer turns the text of
/// numeric VRs into numbers.
fn put<'v>(object: &mut InMemDicomObject, tag: Tag, values: impl IntoIterator<Item = &'v str>) {
    let vr = StandardDataDictionary
        .by_tag(tag)
        .map(|e| match e.vr() {
            VirtualVr::Exact(vr) => vr,
            other => other.relaxed(),
        })
        .unwrap_or(VR::LO);
    let values: Vec<String> = values.into_iter().map(str::to_string).collect();
    if values.iter().all(String::is_empty) {
        object.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        return;
    }
    object.put(DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.into()),
    ));
}

/// A DICOM JSON object we wrote, as a map sorted by tag.
fn parse_object(text: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(level: Level, query: &str) -> Search {
        parse(level, &UidPath::default(), &RawQuery(Some(query.into()))).unwrap()
    }

    #[test]
    fn parameters_become_a_find() {
        let search = parsed(
            Level::Study,
            "PatientName=DOE*&00080020=20200101-20201231&StudyInstanceUID=1.2,1.3\
             &limit=5&offset=10&includefield=00081030,StudyID&fuzzymatching=true",
        );
        let query: BTreeMap<_, _> = search.request.query.iter().cloned().collect();
        assert_eq!(query["PatientName"], "DOE*");
        assert_eq!(query["StudyDate"], "20200101-20201231");
        assert_eq!(query["StudyInstanceUID"], "1.2\\1.3");
        assert_eq!((search.request.limit, search.request.since), (Some(5), 10));
        assert!(search.include.contains(&tags::STUDY_DESCRIPTION));
        assert!(search.include.contains(&tags::STUDY_ID));
        assert!(search.warnings.is_empty());

        let series = parsed(Level::Series, "SOPInstanceUID=1.2.3&limit=99999");
        assert!(
            series.request.query.is_empty(),
            "instance keys are not matched at series level"
        );
        assert_eq!(series.request.limit, Some(MAX_RESULTS));
        assert_eq!(series.warnings.len(), 2);

        let bad = parse(
            Level::Study,
            &UidPath::default(),
            &RawQuery(Some("NoSuchAttribute=1".into())),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn the_scope_constrains_the_find() {
        let scope = UidPath {
            study: "1.2".into(),
            series: Some("1.2.3".into()),
            instance: None,
        };
        let search = parse(Level::Instance, &scope, &RawQuery(None)).unwrap();
        let query: BTreeMap<_, _> = search.request.query.iter().cloned().collect();
        assert_eq!(query["StudyInstanceUID"], "1.2");
        assert_eq!(query["SeriesInstanceUID"], "1.2.3");
    }
}
