-- 0016_hot_rows: the rows every reservation writes cost half as much to check
-- (issue 13 item 4; instructions per reserve + cancel pair, before and after:
-- tests/bench/README.md "Reservation SQL", tests/bench/reserve_callgrind.sh).
--
-- Why: PostgreSQL 15 re-reads every CHECK constraint of a table from its
-- stored node text (stringToNode) and plans it again for EACH statement that
-- inserts or updates a row there: ~46 KB of node text per reservation pair,
-- 20% of the database's instructions. A domain's check is read once per
-- session (the type cache) and compiled into the statement's cached plan.
--
-- 1. Every single-column CHECK of the five tables a reservation writes
--    (users, ledger, reservations, user_events, idempotency_keys) becomes a
--    domain with the same rule: the same values are refused, only the error
--    text names the domain instead of the table's constraint. The checks
--    across columns (ledger's references, a called reservation's deadline,
--    player 2 not the booker, one recipient per event) stay CHECKs.
-- 2. The queue's version (the order of an arcade's snapshots and events)
--    leaves the catalogue row: arcade_queue holds it, one narrow row per
--    arcade with nothing to check, so a queue step no longer rewrites the
--    arcade's row with its nine checks and two triggers. arcades.updated_at
--    is now the catalogue's last change only. rn_queue_bump
--    (storage/sql/03_queue.sql) is the one writer; the arcade's row lock
--    still serialises a queue's steps.

CREATE DOMAIN rn_uid AS text CHECK (char_length(VALUE) BETWEEN 1 AND 128);
CREATE DOMAIN rn_pseudo AS text CHECK (char_length(VALUE) BETWEEN 1 AND 64);
CREATE DOMAIN rn_role AS text CHECK (VALUE IN ('player', 'admin'));
CREATE DOMAIN rn_tickets AS integer CHECK (VALUE >= 0);
CREATE DOMAIN rn_ticket_delta AS integer CHECK (VALUE <> 0);
CREATE DOMAIN rn_ticket_cost AS integer CHECK (VALUE > 0);
CREATE DOMAIN rn_ledger_kind AS text
    CHECK (VALUE IN ('purchase', 'promo', 'reservation', 'refund', 'adjustment', 'reversal'));
CREATE DOMAIN rn_reservation_status AS text
    CHECK (VALUE IN ('waiting', 'called', 'playing', 'completed', 'cancelled', 'expired',
                     'voided', 'timed_out'));
CREATE DOMAIN rn_unlock_code AS text CHECK (VALUE ~ '^[0-9]{6}$');
CREATE DOMAIN rn_event_kind AS text CHECK (char_length(VALUE) BETWEEN 1 AND 64);
CREATE DOMAIN rn_idem_key AS text CHECK (char_length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN rn_http_status AS integer CHECK (VALUE BETWEEN 100 AND 599);

-- A column named in a trigger's WHEN cannot change type: users_touch
-- (0015) is put back as it was.
DROP TRIGGER users_touch ON users;
ALTER TABLE users
    DROP CONSTRAINT users_firebase_uid_check, DROP CONSTRAINT users_pseudo_check,
    DROP CONSTRAINT users_role_check, DROP CONSTRAINT users_tickets_balance_check,
    ALTER firebase_uid TYPE rn_uid, ALTER pseudo TYPE rn_pseudo, ALTER role TYPE rn_role,
    ALTER tickets_balance TYPE rn_tickets;
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW WHEN (OLD.tickets_balance IS NOT DISTINCT FROM NEW.tickets_balance)
    EXECUTE FUNCTION rn_touch_updated_at();
ALTER TABLE ledger
    DROP CONSTRAINT ledger_kind_check, DROP CONSTRAINT ledger_delta_check,
    DROP CONSTRAINT ledger_balance_after_check,
    ALTER kind TYPE rn_ledger_kind, ALTER delta TYPE rn_ticket_delta,
    ALTER balance_after TYPE rn_tickets;
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status_check, DROP CONSTRAINT reservations_unlock_code_check,
    DROP CONSTRAINT reservations_cost_check,
    ALTER status TYPE rn_reservation_status, ALTER unlock_code TYPE rn_unlock_code,
    ALTER cost TYPE rn_ticket_cost;
ALTER TABLE user_events DROP CONSTRAINT user_events_kind_check, ALTER kind TYPE rn_event_kind;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_key_check, DROP CONSTRAINT idempotency_keys_status_code_check,
    ALTER key TYPE rn_idem_key, ALTER status_code TYPE rn_http_status;

-- The queue's version, one row per arcade (a new arcade gets its row from
-- the trigger below, whoever inserts it: the admin API, demo data, tests).
CREATE TABLE arcade_queue (
    arcade_id bigint PRIMARY KEY REFERENCES arcades (id) ON DELETE CASCADE,
    version   bigint NOT NULL DEFAULT 0
);
INSERT INTO arcade_queue (arcade_id, version) SELECT id, queue_version FROM arcades;
ALTER TABLE arcades DROP COLUMN queue_version;

CREATE FUNCTION rn_arcade_queue_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO arcade_queue (arcade_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER arcades_queue_row AFTER INSERT ON arcades
    FOR EACH ROW EXECUTE FUNCTION rn_arcade_queue_row();
