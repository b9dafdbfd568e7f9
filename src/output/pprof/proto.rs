//! The pprof wire format: `perftools.profiles` messages of google/pprof's `profile.proto`
//! (<https://github.com/google/pprof/blob/main/proto/profile.proto>, read at commit
//! b9395ee17fa0d0013c3fd96ac9482318422ac337), written by hand with `prost`'s derive so the build
//! needs no `protoc`. Field names, types and tag numbers follow the .proto exactly; every
//! `int64` that the .proto calls an "index into string table" is an index into
//! [`Profile::string_table`], whose entry 0 must be `""`.
//!
//! Only the encoding matters to readers (`go tool pprof`, Pyroscope, Parca): proto3 scalars at
//! their default value (0, false, empty) are not written.

/// A whole profile (`message Profile`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each value of a sample means, one entry per `Sample::value` slot.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Mapped objects; ids are 1-based and unique.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Code locations; ids are 1-based and unique (0 is reserved).
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions; ids are 1-based and unique.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string of the profile; entry 0 is `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regex (string index) of frames to drop from samples, with everything below them.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regex (string index) of frames to keep despite `drop_frames`.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// Start of the collection, ns since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Duration of the collection in ns.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between sampled occurrences (e.g. `cpu`/`nanoseconds`).
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between sampled occurrences, in `period_type`'s unit.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices), shown by `go tool pprof -comments`.
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The sample type (string index of its `type`) readers show by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
    /// Documentation link for the profile (string index).
    #[prost(int64, tag = "15")]
    pub doc_url: i64,
}

/// A value's kind and unit (`message ValueType`), both string indices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// E.g. `samples`, `cpu` (string index).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// E.g. `count`, `nanoseconds` (string index).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One sample: a stack and its values (`message Sample`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Location ids, **leaf first** (the callee, then its callers up to the root).
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per [`Profile::sample_type`] entry.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels: string (`str`) or numeric (`num`) key/value pairs.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample's label (`message Label`): `str` or `num`, never both.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index), 0 for a numeric label.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of `num` (string index), 0 when unitless.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A mapped object (`message Mapping`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Id (1-based, unique).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start address of the mapping.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// Limit (end) address of the mapping.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// Object name (string index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Build id (string index).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations in this mapping already carry function names (no symbolization needed).
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// ... and file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// ... and line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// ... and inline frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// A code location (`message Location`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Id (1-based, unique).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The mapping it lies in (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Instruction address, 0 when unknown.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Functions at this location, innermost (inlined) first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Frames folded together (not used by hvprof).
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A function and line at a location (`message Line`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line, 0 when unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Source column, 0 when unknown.
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function (`message Function`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Id (1-based, unique).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Name shown to people (string index).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Name as the system knows it, e.g. mangled (string index).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file, or here the object it lives in (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function, 0 when unknown.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}
