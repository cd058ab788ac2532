-- 0011_sql_domains: every SQL function now lives once, in a domain file of
-- storage/sql/ (applied by the runner after the migrations, whenever its
-- content changes). This drops what no domain file defines any more:
--   rn_event_json(user_events)  0002's event shape; 0008 made rn_user_event
--                               and rn_cabinet_event build it inline, and
--                               nothing has called it since.
--   rn_ledger_post's 8-argument form: 02_tickets.sql adds p_event (default
--                               true). CREATE OR REPLACE with one more
--                               argument would make a second function beside
--                               the old one, and calls by name ambiguous. The
--                               runner applies the domain files after this, in
--                               the same transaction: no caller sees it missing.
-- IF EXISTS: a fresh database never had them (the migrations define no
-- function now, only the trigger functions beside their triggers).
DROP FUNCTION IF EXISTS rn_event_json(user_events);
DROP FUNCTION IF EXISTS rn_ledger_post(bigint, integer, text, bigint, bigint, bigint, text, text);
