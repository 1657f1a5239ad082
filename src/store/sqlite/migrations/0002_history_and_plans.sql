-- Less to write per save, which is most of what the store does.
--
-- Each write's events in one row, as a JSON array, instead of one row per event: a callback's
-- writes carry several events, and every row is one more key to place in the table's index
-- inside the writer's transaction.

-- The reference to the deployment is checked at COMMIT: checked within the writer's
-- multi-row INSERT, it would make SQLite keep a statement journal to undo that statement alone.
CREATE TABLE history (
    deployment_id TEXT    NOT NULL REFERENCES deployments (id) DEFERRABLE INITIALLY DEFERRED,
    -- The number of the row's first event in its deployment's history; the others follow.
    first_seq     INTEGER NOT NULL CHECK (first_seq > 0),
    count         INTEGER NOT NULL CHECK (count > 0),
    -- The version written together with them.
    version       INTEGER NOT NULL CHECK (version > 0),
    events        TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, first_seq)
) WITHOUT ROWID;

INSERT INTO history (deployment_id, first_seq, count, version, events)
SELECT deployment_id, seq, 1, version, '[' || event || ']' FROM events;

-- The number of each deployment's last event, kept beside its version so that a save numbers
-- its events from the row it updates, without looking the history up.
ALTER TABLE deployments ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0);

UPDATE deployments
SET last_seq = COALESCE((SELECT MAX(seq) FROM events WHERE deployment_id = deployments.id), 0);

DROP TABLE events;

-- The deployment file's text, written once when the deployment is created, out of the
-- deployments row, which every save rewrites whole.
CREATE TABLE plans (
    deployment_id TEXT PRIMARY KEY NOT NULL REFERENCES deployments (id),
    plan_source   TEXT NOT NULL
);

INSERT INTO plans (deployment_id, plan_source) SELECT id, plan_source FROM deployments;

ALTER TABLE deployments DROP COLUMN plan_source;
