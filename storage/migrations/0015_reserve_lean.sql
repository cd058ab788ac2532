-- 0015_reserve_lean: less database work per reservation (issue 13 item 4;
-- the write list and the numbers: tests/bench/README.md "Reservation SQL").
--
-- A balance posting (rn_ledger_post: tickets_balance and nothing else) no
-- longer runs the users' updated_at trigger: the ledger row it writes in the
-- same statement carries the time of every balance change, and updated_at
-- stays the time of the last change of the profile itself (name, pseudo,
-- deletion), which is what GET /users/profile/export reports.
DROP TRIGGER users_touch ON users;
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW WHEN (OLD.tickets_balance IS NOT DISTINCT FROM NEW.tickets_balance)
    EXECUTE FUNCTION rn_touch_updated_at();

-- Also the mark of this version for older binaries: the one-transaction
-- Idempotency-Key calls (rn_idem_check / rn_idem_store, storage/sql/01_common.sql)
-- serialise a key on an advisory lock that an older binary's rn_idem_begin
-- does not take; with this migration an older binary refuses the database
-- instead of running beside it.
