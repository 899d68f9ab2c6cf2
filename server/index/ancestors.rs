//! The main tags of a resource's ancestors, each read once however many of its descendants
//! ask: what C-FIND identifiers and QIDO-RS answers need beside a match's own tags.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Index, IndexError, Level, Resource};

/// Ancestors read so far: their main tags and their parent's ID.
pub struct AncestorTags<'a> {
    index: &'a Index,
    read: HashMap<(Level, String), (Map<String, Value>, String)>,
}

impl<'a> AncestorTags<'a> {
    pub fn new(index: &'a Index) -> Self {
        AncestorTags {
            index,
            read: HashMap::new(),
        }
    }

    /// The main tags of `resource` at `level`: its own, or those of its ancestor there (read,
    /// with those between, if not read yet). An ancestor gone meanwhile has none.
    pub async fn of<'s>(
        &'s mut self,
        resource: &'s Resource,
        level: Level,
    ) -> Result<&'s Map<String, Value>, IndexError> {
        match (&resource.patient_tags, level) {
            (_, level) if level == resource.level => return Ok(&resource.main_tags),
            (Some(patient), Level::Patient) => return Ok(patient),
            _ => {}
        }
        let mut key = (resource.level, resource.id.clone());
        let mut parent = resource.parent.clone();
        while key.0 > level {
            key = (key.0.parent().expect("a level above"), parent);
            if !self.read.contains_key(&key) {
                let read = match self.index.resource(key.0, &key.1).await? {
                    Some(ancestor) => (ancestor.main_tags, ancestor.parent),
                    None => (Map::new(), String::new()),
                };
                self.read.insert(key.clone(), read);
            }
            parent = self.read[&key].1.clone();
        }
        Ok(&self.read[&key].0)
    }
}
