-- Every billing object belongs to exactly one tenant; this is the root of that hierarchy.
CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    created    BIGINT  NOT NULL
);
