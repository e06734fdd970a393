-- Journey Runtime's PostgreSQL schema, version 1. Applied by `journeyd`
-- at start (see migrate.rs); never edited once released: a change is a
-- new numbered migration.
--
-- Records are kept whole as `json` (the same serde form sled keeps, byte
-- for byte: `json`, unlike `jsonb`, keeps the text as written), with the
-- columns the store looks them up by beside them. Times are ms since the
-- Unix epoch, as everywhere in the runtime.

-- Fresh ids for instances and claims (`Journal::next_id`).
CREATE SEQUENCE ids START 1;

-- The catalog: what the runtime runs, and its settings. `catalog_version`
-- moves (and NOTIFY journeyd_catalog fires) with every change.
CREATE TABLE catalog_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO catalog_version VALUES (true, 0);

CREATE TABLE blobs (digest text PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE plugins (
    name text NOT NULL, version integer NOT NULL, record json NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE tags (
    plugin text NOT NULL, tag text NOT NULL, record json NOT NULL,
    PRIMARY KEY (plugin, tag)
);
CREATE TABLE tag_changes (
    seq bigserial PRIMARY KEY, plugin text NOT NULL, record json NOT NULL
);
CREATE INDEX tag_changes_by_plugin ON tag_changes (plugin, seq);
-- Canary runs of a rollout, counted by every node (the rollback rule
-- judges them all).
CREATE TABLE canary_runs (
    plugin text NOT NULL, tag text NOT NULL, set_at_ms bigint NOT NULL,
    runs bigint NOT NULL, failures bigint NOT NULL,
    PRIMARY KEY (plugin, tag, set_at_ms)
);
CREATE TABLE version_stats (
    plugin text NOT NULL, version integer NOT NULL, record json NOT NULL,
    PRIMARY KEY (plugin, version)
);
CREATE TABLE journeys (
    name text NOT NULL, version integer NOT NULL, record json NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE migrations (
    journey text NOT NULL, from_version integer NOT NULL, record json NOT NULL,
    PRIMARY KEY (journey, from_version)
);
CREATE TABLE integrations (channel text PRIMARY KEY, record json NOT NULL);
CREATE TABLE tokens (name text PRIMARY KEY, record json NOT NULL);
CREATE TABLE meta (name text PRIMARY KEY, value json NOT NULL);
CREATE TABLE audit (seq bigserial PRIMARY KEY, record json NOT NULL);

-- Customers.
CREATE TABLE customers (id text PRIMARY KEY, profile json NOT NULL);
CREATE TABLE interactions (
    seq bigserial PRIMARY KEY, customer text NOT NULL, at_ms bigint NOT NULL,
    kind text NOT NULL, record json NOT NULL
);
CREATE INDEX interactions_by_customer ON interactions (customer, seq);
CREATE INDEX interactions_by_time ON interactions (at_ms);
CREATE TABLE channel_choices (
    customer text NOT NULL, channel text NOT NULL, record json NOT NULL,
    PRIMARY KEY (customer, channel)
);
CREATE TABLE engagement (
    seq bigserial PRIMARY KEY, customer text NOT NULL, at_ms bigint NOT NULL,
    record json NOT NULL
);
CREATE INDEX engagement_by_customer ON engagement (customer, seq);
CREATE INDEX engagement_by_time ON engagement (at_ms);
-- Sends counted against frequency caps (committed with their step), and
-- reservations made before the step commits. The cap's check and a
-- reservation take the row lock of (customer, channel) in send_slots, so
-- two nodes never both take the last slot.
CREATE TABLE counted_sends (
    customer text NOT NULL, channel text NOT NULL, at_ms bigint NOT NULL,
    message text NOT NULL, instance bigint NOT NULL,
    PRIMARY KEY (customer, channel, at_ms, message)
);
CREATE INDEX counted_sends_by_instance ON counted_sends (instance);
CREATE TABLE send_slots (
    customer text NOT NULL, channel text NOT NULL,
    PRIMARY KEY (customer, channel)
);
CREATE TABLE send_reservations (
    id bigserial PRIMARY KEY, customer text NOT NULL, channel text NOT NULL,
    at_ms bigint NOT NULL,
    -- On the database's clock: a node that died holding it lets it lapse.
    expires_at_ms bigint NOT NULL
);
CREATE INDEX send_reservations_by_customer ON send_reservations (customer, channel, at_ms);

-- The journal.
CREATE TABLE events (
    id text PRIMARY KEY, customer text NOT NULL, received_at_ms bigint NOT NULL,
    record json NOT NULL
);
CREATE INDEX events_by_customer ON events (customer, id);
CREATE INDEX events_by_time ON events (received_at_ms);
CREATE TABLE instances (
    id bigint PRIMARY KEY,
    journey text NOT NULL,
    version integer NOT NULL,
    customer text NOT NULL,
    correlation text NOT NULL,
    status text NOT NULL,
    -- Set while its customer's other instances of its journey look it up
    -- (single re-entry, exit events): unfinished and indexed by customer.
    active_by_customer boolean NOT NULL,
    -- When it finished, once it has (what retention walks).
    finished_at_ms bigint,
    record json NOT NULL
);
CREATE INDEX instances_by_correlation ON instances (journey, correlation);
CREATE INDEX instances_by_customer ON instances (customer, id);
CREATE INDEX instances_running ON instances (id) WHERE status = 'running';
CREATE INDEX instances_active ON instances (journey, customer) WHERE active_by_customer;
CREATE INDEX instances_finished ON instances (journey, finished_at_ms, id) WHERE finished_at_ms IS NOT NULL;
-- Timers of waiting instances, and who claimed one until when.
CREATE TABLE timers (
    due_ms bigint NOT NULL, instance bigint NOT NULL, claimed_until_ms bigint,
    PRIMARY KEY (due_ms, instance)
);
CREATE INDEX timers_by_instance ON timers (instance);
-- Instances waiting for an event.
CREATE TABLE waits (
    kind text NOT NULL, correlation text NOT NULL, instance bigint NOT NULL,
    PRIMARY KEY (kind, correlation, instance)
);
CREATE INDEX waits_by_instance ON waits (instance);
CREATE TABLE history (
    instance bigint NOT NULL, seq integer NOT NULL, entry json NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TABLE pending_exits (instance bigint PRIMARY KEY, event text NOT NULL);

-- The outbox: messages (written by step commits) and their deliveries.
-- Queue order is (instance, seq, idx): the step that queued a message and
-- its place among the step's messages, as in its id.
CREATE TABLE outbox (
    -- The message's id (`i-<instance>/<seq>/m<idx>`).
    id text PRIMARY KEY,
    -- The instance that queued it.
    instance bigint NOT NULL,
    -- The history slot of the step that queued it.
    seq integer NOT NULL,
    -- Its index among the step's messages.
    idx integer NOT NULL,
    -- Its channel (what listings filter on).
    channel text NOT NULL,
    -- The message (`OutboxMessage`).
    record json NOT NULL,
    -- The delivery's status (`DeliveryStatus::as_str`).
    status text NOT NULL,
    -- When a dispatcher may claim it next: the delivery's due time while
    -- it is queued, retrying, or sending until its lease ends; NULL once
    -- it is never claimed again.
    due_ms bigint,
    -- The integration that last handled it, if any.
    integration text,
    -- The delivery (`Delivery`); the three columns above repeat it.
    delivery json NOT NULL,
    UNIQUE (instance, seq, idx)
);
CREATE INDEX outbox_due ON outbox (due_ms, instance, seq, idx) WHERE due_ms IS NOT NULL;
CREATE INDEX outbox_by_status ON outbox (status, instance, seq, idx);
-- Messages by the id a provider gave them when it accepted them.
CREATE TABLE provider_ids (
    -- The integration whose provider gave the id.
    integration text NOT NULL,
    -- The provider's id.
    provider_id text NOT NULL,
    -- The message it names (dropped with it).
    message text NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    PRIMARY KEY (integration, provider_id)
);
CREATE INDEX provider_ids_by_message ON provider_ids (message);

-- Counts kept as commits land (see store/model/funnel.rs).
CREATE TABLE funnel_marks (instance bigint PRIMARY KEY, mark json NOT NULL);
CREATE TABLE live_tallies (
    journey text NOT NULL, version integer NOT NULL, day_ms bigint NOT NULL,
    tally json NOT NULL, PRIMARY KEY (journey, version, day_ms)
);
CREATE TABLE purged_tallies (
    journey text NOT NULL, version integer NOT NULL, day_ms bigint NOT NULL,
    tally json NOT NULL, PRIMARY KEY (journey, version, day_ms)
);
CREATE TABLE standing (
    journey text NOT NULL, version integer NOT NULL, counts json NOT NULL,
    PRIMARY KEY (journey, version)
);
