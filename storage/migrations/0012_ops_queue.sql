-- 0012_ops_queue: what the operators need to run the queues (issue 10 items
-- 1, 2, 9). The rules live in storage/sql/03_queue.sql (rn_admin_void,
-- rn_game_timeout, rn_cabinet_report, rn_admin_maintenance, rn_reserve_do).

-- A game's maximum duration; NULL: the hub's --game-max-s. Past it plus the
-- hub's --game-grace-s a playing reservation ends as timed_out.
ALTER TABLE games ADD COLUMN max_duration_s integer
    CHECK (max_duration_s BETWEEN 1 AND 86400);

-- An admin's maintenance switch, apart from the cabinet's own status (which
-- the cabinet and its socket drive): while on, nobody is called and new
-- reservations are refused with the message.
ALTER TABLE arcades
    ADD COLUMN maintenance boolean NOT NULL DEFAULT false,
    ADD COLUMN maintenance_message text
        CHECK (char_length(maintenance_message) <= 500);

-- One active reservation per player across the network (rn_reserve_do looks
-- for the player's waiting / called / playing reservations, as booker or as
-- player 2, under the users' row locks).
CREATE INDEX reservations_active_user_idx ON reservations (user_id)
    WHERE status IN ('waiting', 'called', 'playing');
CREATE INDEX reservations_active_player2_idx ON reservations (player2_id)
    WHERE status IN ('waiting', 'called', 'playing') AND player2_id IS NOT NULL;

-- A game past its maximum duration, or one its cabinet no longer knows, ends
-- as timed_out (0001 named it in DESIGN.md, not in the CHECK).
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('waiting', 'called', 'playing', 'completed',
                      'cancelled', 'expired', 'voided', 'timed_out'));

-- Optional opening hours per arcade, in the arcade's time zone. NULL opens_at
-- / closes_at: always open. closes_at before opens_at: open past midnight.
-- The queue stops taking bookings last_call_min minutes before closing; at
-- closing the reservations still waiting are voided and refunded.
ALTER TABLE arcades
    ADD COLUMN opens_at time,
    ADD COLUMN closes_at time,
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN last_call_min integer NOT NULL DEFAULT 15 CHECK (last_call_min BETWEEN 0 AND 720),
    ADD CONSTRAINT arcades_hours_both CHECK ((opens_at IS NULL) = (closes_at IS NULL)),
    ADD CONSTRAINT arcades_hours_differ CHECK (opens_at IS DISTINCT FROM closes_at OR opens_at IS NULL);

-- One slot of a cabinet in maintenance (its game cannot be played there): its
-- game takes no booking at that arcade and its waiting reservations are not
-- called (the others are served past them) until it is back.
ALTER TABLE arcade_games ADD COLUMN maintenance boolean NOT NULL DEFAULT false;
