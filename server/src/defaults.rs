//! The shipped policy set, schema and seed entities, built into the binary so that
//! `writ init` (and `writ serve` on a fresh data dir) can lay them down anywhere.

/// (file name, text) of every default policy file.
pub const POLICIES: [(&str, &str); 10] = [
    ("admin.cedar", include_str!("../../policies/admin.cedar")),
    ("egress.cedar", include_str!("../../policies/egress.cedar")),
    ("files.cedar", include_str!("../../policies/files.cedar")),
    ("grants.cedar", include_str!("../../policies/grants.cedar")),
    (
        "kill_switch.cedar",
        include_str!("../../policies/kill_switch.cedar"),
    ),
    (
        "membership.cedar",
        include_str!("../../policies/membership.cedar"),
    ),
    ("roles.cedar", include_str!("../../policies/roles.cedar")),
    (
        "sensitive.cedar",
        include_str!("../../policies/sensitive.cedar"),
    ),
    (
        "separation.cedar",
        include_str!("../../policies/separation.cedar"),
    ),
    (
        "tenancy.cedar",
        include_str!("../../policies/tenancy.cedar"),
    ),
];

/// (file name, text) of the default schema.
pub const SCHEMAS: [(&str, &str); 1] = [(
    "writ.cedarschema",
    include_str!("../../schemas/writ.cedarschema"),
)];

/// The entities every new kernel starts with: the roles, the global kill switch
/// (released) and the kernel entity.
pub const SEED_ENTITIES: &str = include_str!("../../policies/seed.entities.json");
