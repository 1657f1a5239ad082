-- Deployments, the callback index and the event history.

CREATE TABLE deployments (
    id          TEXT    PRIMARY KEY NOT NULL,
    application TEXT    NOT NULL,
    -- The deployment file's text; the runtime validates it again on load.
    plan_source TEXT    NOT NULL,
    -- The core's DeploymentState as JSON: templates and context, never a rendered request.
    state       TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    -- 1 when status is terminal. Written by Rust (DeploymentStatus::is_terminal) so that no
    -- query carries its own list of terminal statuses.
    finished    INTEGER NOT NULL CHECK (finished IN (0, 1)),
    version     INTEGER NOT NULL CHECK (version > 0),
    -- RFC 3339 UTC with microseconds: fixed width, so text order is time order.
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

-- list_unfinished: only the few unfinished rows are indexed, however long the table grows.
CREATE INDEX deployments_unfinished ON deployments (created_at, id) WHERE finished = 0;

-- running_for_application.
CREATE INDEX deployments_by_application ON deployments (application, status, created_at);

-- find_by_callback: the primary key is the lookup index.
CREATE TABLE callbacks (
    callback_id   TEXT PRIMARY KEY NOT NULL,
    deployment_id TEXT NOT NULL REFERENCES deployments (id)
) WITHOUT ROWID;

-- history: the primary key orders a deployment's events.
CREATE TABLE events (
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    seq           INTEGER NOT NULL CHECK (seq > 0),
    version       INTEGER NOT NULL CHECK (version > 0),
    event         TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;
