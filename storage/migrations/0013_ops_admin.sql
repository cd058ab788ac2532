-- 0013_ops_admin: the operators' catalogue edits, cabinet config and audit
-- log (issue 10 items 3-5). Functions: storage/sql/05_admin.sql (catalogue,
-- cabinet config) and storage/sql/06_audit.sql (rn_audit_log and its reads).

-- Every admin action and sensitive event is one row: who, when, what, on
-- what, and the target before and after (NULL for a creation / a deletion).
-- Append-only: nothing updates or deletes a row. Ids order the rows (the
-- cursor of GET /admin/audit); "at" is the transaction's clock.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 160),
    action      text NOT NULL CHECK (action ~ '^[a-z_.]{1,64}$'),
    target_type text NOT NULL CHECK (target_type ~ '^[a-z_]{1,32}$'),
    target_id   text CHECK (char_length(target_id) <= 160),
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- The game's maximum duration, edited here; opsqueue's 0012 adds the same
-- column (same type, nullable: NULL is the hub's default) for its timeouts.
ALTER TABLE games ADD COLUMN IF NOT EXISTS max_duration_s integer;

-- The admin functions that create things now take the acting admin first
-- (for the audit log): their old signatures go (05_admin.sql defines the
-- new ones, applied after this in the same transaction).
DROP FUNCTION IF EXISTS rn_admin_promo_create(jsonb);
DROP FUNCTION IF EXISTS rn_admin_game_create(jsonb);
DROP FUNCTION IF EXISTS rn_admin_arcade_create(bigint, text, jsonb);
DROP FUNCTION IF EXISTS rn_admin_arcade_rotate_key(bigint, text);
DROP FUNCTION IF EXISTS rn_admin_arcade_add_game(bigint, bigint, integer);
