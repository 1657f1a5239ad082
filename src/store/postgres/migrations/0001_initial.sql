-- Deployments, the callback index and the event history. Applied with search_path set to the
-- store's schema, so these names land there.

-- Ids compare byte by byte (COLLATE "C") whatever the database's collation, so that ordering
-- by id agrees with Rust's ordering of strings.
CREATE TABLE deployments (
    id          text COLLATE "C" PRIMARY KEY,
    application text        NOT NULL,
    -- The deployment file's text; the runtime validates it again on load.
    plan_source text        NOT NULL,
    -- The core's DeploymentState as JSON text, exactly as written: templates and context,
    -- never a rendered request.
    state       text        NOT NULL,
    status      text        NOT NULL,
    -- Whether status is terminal. Written by Rust (DeploymentStatus::is_terminal) so that no
    -- query carries its own list of terminal statuses.
    finished    boolean     NOT NULL,
    version     bigint      NOT NULL CHECK (version > 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- list_unfinished: only the few unfinished rows are indexed, however long the table grows.
CREATE INDEX deployments_unfinished ON deployments (created_at, id) WHERE NOT finished;

-- running_for_application.
CREATE INDEX deployments_by_application ON deployments (application, status, created_at);

-- find_by_callback: the primary key is the lookup index.
CREATE TABLE callbacks (
    callback_id   text COLLATE "C" PRIMARY KEY,
    deployment_id text COLLATE "C" NOT NULL REFERENCES deployments (id)
);

-- history: the primary key orders a deployment's events.
CREATE TABLE events (
    deployment_id text COLLATE "C" NOT NULL REFERENCES deployments (id),
    seq           bigint NOT NULL CHECK (seq > 0),
    version       bigint NOT NULL CHECK (version > 0),
    event         text   NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
