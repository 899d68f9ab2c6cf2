//! The four levels of the DICOM hierarchy and where each lives in the schema.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Patient,
    Study,
    Series,
    Instance,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Patient, Level::Study, Level::Series, Level::Instance];

    /// The name Orthanc uses in `Type`, `ResourceType` and `Level`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Patient => "Patient",
            Level::Study => "Study",
            Level::Series => "Series",
            Level::Instance => "Instance",
        }
    }

    /// The first segment of the level's REST routes, which is also its table.
    pub fn plural(self) -> &'static str {
        match self {
            Level::Patient => "patients",
            Level::Study => "studies",
            Level::Series => "series",
            Level::Instance => "instances",
        }
    }

    pub(super) fn table(self) -> &'static str {
        self.plural()
    }

    /// The column of this level's table that holds the parent's ID.
    pub(super) fn parent_column(self) -> Option<&'static str> {
        match self {
            Level::Patient => None,
            Level::Study => Some("patient"),
            Level::Series => Some("study"),
            Level::Instance => Some("series"),
        }
    }

    pub fn parent(self) -> Option<Level> {
        match self {
            Level::Patient => None,
            Level::Study => Some(Level::Patient),
            Level::Series => Some(Level::Study),
            Level::Instance => Some(Level::Series),
        }
    }

    pub fn child(self) -> Option<Level> {
        match self {
            Level::Patient => Some(Level::Study),
            Level::Study => Some(Level::Series),
            Level::Series => Some(Level::Instance),
            Level::Instance => None,
        }
    }

    /// The route segment, e.g. `studies` → `Study`.
    pub fn from_plural(segment: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.plural() == segment)
    }

    /// A level named as in `/tools/find`'s `Level` (case-insensitive, as Orthanc).
    pub fn from_name(name: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name))
    }

    /// The REST path of a resource, as Orthanc's `Path` fields.
    pub fn path(self, id: &str) -> String {
        format!("/{}/{id}", self.plural())
    }

    /// The levels above this one, nearest first.
    pub fn ancestors(self) -> impl Iterator<Item = Level> {
        std::iter::successors(self.parent(), |l| l.parent())
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
