-- 0017_lean_checks: the same rules on the rows a reservation writes, checked
-- for less (issue 13 item 4; instructions per reserve + cancel pair, before
-- and after each step: tests/bench/README.md "Reservation SQL",
-- tests/bench/reserve_callgrind.sh).
--
-- 1. The ledger's five reference rules (ledger_purchase_ref, _promo_ref,
--    _refund_ref, _reservation_ref, _adjustment_reason) move from CHECK
--    constraints to one BEFORE INSERT trigger with the same rule. Why:
--    PostgreSQL 15 reads a table's CHECK constraints back from their stored
--    node text (stringToNode, ~5.8 KB for these five) and plans them again
--    for EACH statement that writes the table, twice per pair here; a
--    PL/pgSQL trigger's expression is planned once per session. The ledger
--    is append-only (ledger_append_only refuses UPDATE), so checking INSERT
--    is checking every row, as before; a refused row is still a
--    check_violation (SQLSTATE 23514) naming the rule.
-- 2. The reservations' two cross-column rules (a called reservation has a
--    deadline, player 2 is not the booker) join its updated_at touch in one
--    BEFORE INSERT OR UPDATE trigger (rn_reservations_row), for the same
--    reason: one trigger call per row instead of two CHECKs re-read per
--    statement plus a trigger.
-- 3. The foreign keys of the rows every reservation writes to rows it has
--    just read or locked are dropped; each one cost a query per row
--    (SELECT ... FOR KEY SHARE through SPI: 13 per reserve + cancel in the
--    hub, none left):
--      user_events.user_id, idempotency_keys.user_id -> users: every writer
--        takes the user id from the user's row it read in the same
--        transaction (the caller's uid, or a reservation's players);
--      ledger.user_id -> users: rn_ledger_post, the only writer (test_migrate),
--        inserts the row from the users row its own statement updated, so
--        the user exists by construction;
--      ledger.reservation_id -> reservations: its callers (the debit in
--        rn_reserve_do, the refunds through rn_reservation_refund) pass the id
--        of the reservation row they have just inserted or locked;
--      reservations.arcade_id, game_id, user_id, player2_id: rn_reserve_do,
--        the only writer, inserts under the arcade's row lock, after reading
--        the game on that arcade and locking both players' rows.
--    What the keys also guaranteed, that a referenced row is never deleted
--    under its references, is kept by refusing DELETE on users, arcades,
--    games and reservations (rn_refuse_delete below): nothing in the hub
--    deletes them (a user or an arcade is marked deleted_at, a game
--    inactive, a reservation ends in a status), and rn_audit
--    (storage/sql/02_tickets.sql) reports any orphan as kind 'orphan'. The
--    other keys stay (ledger.purchase_id and promo_use_id, written outside
--    the reservation path, user_events.arcade_id, scores, friendships, ...).

ALTER TABLE ledger
    DROP CONSTRAINT ledger_purchase_ref, DROP CONSTRAINT ledger_promo_ref,
    DROP CONSTRAINT ledger_refund_ref, DROP CONSTRAINT ledger_reservation_ref,
    DROP CONSTRAINT ledger_adjustment_reason,
    DROP CONSTRAINT ledger_user_id_fkey, DROP CONSTRAINT ledger_reservation_id_fkey;

CREATE FUNCTION rn_ledger_refs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Parenthesised: PL/pgSQL ends an IF's condition at its first THEN.
    IF NOT (CASE NEW.kind
                WHEN 'purchase' THEN NEW.purchase_id IS NOT NULL AND NEW.delta > 0
                WHEN 'promo' THEN NEW.promo_use_id IS NOT NULL AND NEW.delta > 0
                WHEN 'refund' THEN NEW.reservation_id IS NOT NULL AND NEW.delta > 0
                WHEN 'reservation' THEN NEW.reservation_id IS NOT NULL AND NEW.delta < 0
                WHEN 'adjustment' THEN NEW.reason IS NOT NULL
                ELSE true END) THEN
        RAISE EXCEPTION 'new row for relation "ledger" violates rule "ledger_refs" (kind %)',
                        NEW.kind
            USING ERRCODE = 'check_violation', TABLE = 'ledger', CONSTRAINT = 'ledger_refs',
                  DETAIL = 'purchase, promo, refund: its reference and delta > 0; '
                           'reservation: its reference and delta < 0; adjustment: a reason';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_refs BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION rn_ledger_refs();

ALTER TABLE reservations
    DROP CONSTRAINT reservations_called_deadline, DROP CONSTRAINT reservations_player2_other,
    DROP CONSTRAINT reservations_arcade_id_fkey, DROP CONSTRAINT reservations_game_id_fkey,
    DROP CONSTRAINT reservations_user_id_fkey, DROP CONSTRAINT reservations_player2_id_fkey;

CREATE FUNCTION rn_reservations_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'called' AND NEW.deadline IS NULL THEN
        RAISE EXCEPTION 'new row for relation "reservations" violates rule "reservations_called_deadline"'
            USING ERRCODE = 'check_violation', TABLE = 'reservations',
                  CONSTRAINT = 'reservations_called_deadline';
    END IF;
    IF NEW.player2_id = NEW.user_id THEN
        RAISE EXCEPTION 'new row for relation "reservations" violates rule "reservations_player2_other"'
            USING ERRCODE = 'check_violation', TABLE = 'reservations',
                  CONSTRAINT = 'reservations_player2_other';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now(); -- what reservations_touch did
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER reservations_touch ON reservations;
CREATE TRIGGER reservations_row BEFORE INSERT OR UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION rn_reservations_row();

ALTER TABLE user_events DROP CONSTRAINT user_events_user_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_user_id_fkey;

-- Users, arcades, games and reservations are never deleted: what the
-- dropped keys relied on, now said by the schema.
CREATE FUNCTION rn_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted: mark them (deleted_at, active, status)',
                    TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
END
$$;
CREATE TRIGGER users_never_deleted BEFORE DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION rn_refuse_delete();
CREATE TRIGGER arcades_never_deleted BEFORE DELETE OR TRUNCATE ON arcades
    FOR EACH STATEMENT EXECUTE FUNCTION rn_refuse_delete();
CREATE TRIGGER games_never_deleted BEFORE DELETE OR TRUNCATE ON games
    FOR EACH STATEMENT EXECUTE FUNCTION rn_refuse_delete();
CREATE TRIGGER reservations_never_deleted BEFORE DELETE OR TRUNCATE ON reservations
    FOR EACH STATEMENT EXECUTE FUNCTION rn_refuse_delete();
