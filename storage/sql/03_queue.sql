-- 03_queue: the queue of each arcade (DESIGN.md "Queue semantics"):
-- reserve, cancel, call, unlock, game over, expiry, the cabinet's side and
-- its lease, the public snapshot, and the catalogue reads (arcades, games),
-- and the operators' side (at the end): void, game timeouts, the cabinet's
-- report, maintenance of an arcade or a slot, opening hours, and the rule of
-- one active reservation per player.
--
-- Layout (storage/sql/README.md): every SQL function of the hub lives in
-- exactly one domain file, as CREATE OR REPLACE; the runner (storage/migrate.c)
-- applies a file again whenever its content changes, after the migrations, in
-- their transaction, in file-name order (01 .. 05). Tables, indexes and data
-- changes stay in storage/migrations. A LANGUAGE sql body is checked when it
-- is created, so it may only call functions of this file defined above it or
-- of a file applied earlier; PL/pgSQL binds late and may call anything.
-- A function removed from here must be DROPped by a new migration.
--
-- Every function here that changes an arcade's queue
--   * first locks the arcade row (SELECT ... FOR UPDATE): one arcade's
--     transitions are serialised, whichever hub process runs them; lock order
--     is always arcade, then user (balance), so they cannot deadlock;
--   * bumps its queue version once (rn_queue_bump: arcade_queue, migration
--     0016), before it writes its events, so that
--     every event and snapshot it makes carries the new version;
--   * returns its answer (hub/db.h) with the new public snapshot as "arcade".
-- A call that changes nothing (a repeated transition, a second process trying
-- the same one) leaves the version alone and returns no "arcade".
--
-- Reservations are served in id order: the head of an arcade's queue is its
-- lowest waiting id, position = 1 + the number of waiting ids below. At most
-- one reservation per arcade is called or playing (a unique index of 0001).
--
-- Users are named by their Firebase uid (rn_user_id); the public snapshot
-- names players by pseudo only, and no REST body ever carries an unlock code:
-- the code travels only in the players' private your_turn event.
--
-- Speed (migration 0008 made reserve + cancel 2.5x faster; keep it so,
-- measured by tests/bench/reserve_pgbench.sh):
--   * helpers are PL/pgSQL, not LANGUAGE sql: PostgreSQL 15 plans a sql
--     function that cannot be inlined again at every call, PL/pgSQL keeps its
--     plans for the session;
--   * what one transaction needs several times is computed once and passed
--     down: internal helpers (suffix _x) take what the caller already knows:
--       rn_queue_snapshot_x(arcade row, avg)  the snapshot in one statement
--       rn_reservation_json_x(row, avg, pos)  the REST body of a reservation
--       rn_step_events_x(users[], kinds[], payloads[], arcade, after, avg)
--           a step's own events and its position events, one INSERT ... SELECT
--       rn_users_events_x / rn_position_events_x  the two halves of it
--     The rolling mean only changes when a game completes (rn_game_over),
--     which none of reserve, cancel or call-next does, so computing it once
--     per transaction gives the same numbers;
--   * event order is kept: the rows of one INSERT ... SELECT ... ORDER BY get
--     their ids (the serial default) in that order, and every array lists
--     them by id, booker before player 2.

-- THE writer of an arcade's queue version (arcade_queue, migration 0016): the
-- order of the arcade's snapshots and events. +1, returned. The caller holds
-- the arcade's row lock (FOR UPDATE), which serialises the bumps.
CREATE OR REPLACE FUNCTION rn_queue_bump(p_arcade_id bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE arcade_queue SET version = version + 1 WHERE arcade_id = p_arcade_id
    RETURNING version INTO v;
    RETURN v;
END
$$;

-- The payload of a position event: a waiting reservation's place and ETA.
-- LANGUAGE sql and STABLE (what jsonb_build_object is): inlined into the
-- queries and expressions that use it. Labelled IMMUTABLE it was not, and
-- was planned again at every call (rn_answer's note, 01_common.sql).
CREATE OR REPLACE FUNCTION rn_position_payload(p_reservation_id bigint, p_arcade_id bigint,
                                               p_position integer, p_avg integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('reservation_id', p_reservation_id, 'arcade_id', p_arcade_id,
                              'position', p_position, 'eta_s', p_position * p_avg,
                              'eta_is_estimate', true)
$$;

-- A fresh 6-digit unlock code from the server's CSPRNG. gen_random_uuid()
-- (core since PostgreSQL 13, no extension) draws from pg_strong_random(); the
-- first 8 hex digits of a version-4 UUID are 32 random bits. Values at or
-- above 4,294,000,000 (the largest multiple of 10^6 below 2^32) are drawn
-- again, so every code is equally likely.
CREATE OR REPLACE FUNCTION rn_unlock_code()
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v bigint;
BEGIN
    LOOP
        v := ('x' || substr(gen_random_uuid()::text, 1, 8))::bit(32)::bigint;
        IF v < 4294000000 THEN
            RETURN lpad((v % 1000000)::text, 6, '0');
        END IF;
    END LOOP;
END
$$;

-- Mean length in seconds of the arcade's last 20 completed games (start of
-- play -> game over); 180 while fewer than 3 are known. At least 1.
CREATE OR REPLACE FUNCTION rn_avg_game_s(p_arcade_id bigint)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_avg integer;
BEGIN
    SELECT CASE WHEN count(*) >= 3
                THEN greatest(1, round(avg(extract(epoch FROM t.ended_at - t.started_at))))::integer
                ELSE 180 END
    INTO v_avg
    FROM (SELECT r.started_at, r.ended_at
          FROM reservations r
          WHERE r.arcade_id = p_arcade_id AND r.status = 'completed'
            AND r.started_at IS NOT NULL AND r.ended_at IS NOT NULL
          ORDER BY r.ended_at DESC
          LIMIT 20) t;
    RETURN v_avg;
END
$$;

-- A reservation's players by pseudo, booker first.
CREATE OR REPLACE FUNCTION rn_players(p_user_id bigint, p_player2_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_players jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(u.pseudo ORDER BY o.n), '[]'::jsonb)
    INTO v_players
    FROM (VALUES (1, p_user_id), (2, p_player2_id)) AS o (n, uid)
    JOIN users u ON u.id = o.uid;
    RETURN v_players;
END
$$;

-- 1-based position of a waiting reservation in its arcade's queue; NULL
-- for any other status.
CREATE OR REPLACE FUNCTION rn_position(p_res reservations)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_pos integer;
BEGIN
    IF p_res.status IS DISTINCT FROM 'waiting' THEN
        RETURN NULL;
    END IF;
    SELECT count(*)::integer INTO v_pos FROM reservations w
    WHERE w.arcade_id = p_res.arcade_id AND w.status = 'waiting' AND w.id <= p_res.id;
    RETURN v_pos;
END
$$;

-- Writes one private event per player of a reservation (booker first);
-- returns them as an array.
CREATE OR REPLACE FUNCTION rn_players_event(p_user_id bigint, p_player2_id bigint, p_kind text,
                                            p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_users_events_x(ARRAY[p_user_id, p_player2_id], ARRAY[p_kind, p_kind],
                             ARRAY[p_payload, p_payload]);
END
$$;

-- rn_queue_snapshot for an arcade row the caller already holds (as it is
-- now) and its rolling mean game length p_avg
-- (rn_avg_game_s). NULL for a deleted arcade. Players by pseudo only.
-- At most one reservation of an arcade is called or playing (the unique
-- index reservations_one_active_per_arcade): one query finds it. Names are
-- scalar sub-selects, not joins: fewer plan nodes to start at every call
-- (the snapshot is built twice per reservation pair), the same answer
-- (users and games are never deleted: migration 0017).
CREATE OR REPLACE FUNCTION rn_queue_snapshot_x(a arcades, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_snapshot jsonb;
BEGIN
    IF a.id IS NULL OR a.deleted_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object(
               'type', 'queue', 'arcade_id', a.id, 'v', (SELECT q.version FROM arcade_queue q WHERE q.arcade_id = a.id), 'name', a.name,
               'status', a.status,
               'maintenance', a.maintenance, 'maintenance_message', a.maintenance_message,
               'called', CASE WHEN act.status = 'called' THEN act.obj END,
               'playing', CASE WHEN act.status = 'playing' THEN act.obj END,
               'waiting', wl.list, 'avg_game_s', p_avg, 'eta_is_estimate', true)
    INTO v_snapshot
    FROM (SELECT coalesce(jsonb_agg(jsonb_build_object(
                     'reservation_id', w.id, 'position', w.pos, 'game_id', w.game_id,
                     'game', (SELECT g.name FROM games g WHERE g.id = w.game_id),
                     'players', (SELECT jsonb_agg(u.pseudo ORDER BY u.id = w.player2_id)
                                   FROM users u WHERE u.id IN (w.user_id, w.player2_id)),
                     'eta_s', w.pos * p_avg)
                     ORDER BY w.id), '[]'::jsonb) AS list
          FROM (SELECT r.id, r.game_id, r.user_id, r.player2_id,
                       row_number() OVER (ORDER BY r.id) AS pos
                FROM reservations r
                WHERE r.arcade_id = a.id AND r.status = 'waiting') w) wl
    LEFT JOIN LATERAL (
          SELECT r.status,
                 jsonb_build_object('reservation_id', r.id, 'game_id', r.game_id,
                                    'game', (SELECT g.name FROM games g WHERE g.id = r.game_id),
                                    'slot', (SELECT ag.slot FROM arcade_games ag
                                              WHERE ag.arcade_id = r.arcade_id AND ag.game_id = r.game_id),
                                    'players', (SELECT jsonb_agg(u.pseudo ORDER BY u.id = r.player2_id)
                                                  FROM users u WHERE u.id IN (r.user_id, r.player2_id)))
                 || CASE WHEN r.status = 'called'
                         THEN jsonb_build_object('deadline_ms', rn_ms(r.deadline))
                         ELSE jsonb_build_object('started_ms', rn_ms(r.started_at)) END AS obj
          FROM reservations r
          WHERE r.arcade_id = a.id AND r.status IN ('called', 'playing')) act ON true;
    RETURN v_snapshot;
END
$$;

-- The public view of an arcade's queue (hub/queue.h), or NULL for an unknown
-- or deleted arcade. Players by pseudo only: never a uid, never a code.
-- eta_s = position x avg_game_s (rn_avg_game_s): always an estimate.
CREATE OR REPLACE FUNCTION rn_queue_snapshot(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    a arcades;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN rn_queue_snapshot_x(a, rn_avg_game_s(a.id));
END
$$;

-- The answer of a queue mutation: rn_answer plus the arcade's new snapshot,
-- built in one go.
CREATE OR REPLACE FUNCTION rn_queue_answer(p_status integer, p_body jsonb, p_events jsonb,
                                           p_arcade_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'events', p_events,
                              'arcade', rn_queue_snapshot(p_arcade_id))
$$;

-- rn_position_events with the arcade's rolling mean game length given:
-- rn_step_events_x with no events of the step's own.
CREATE OR REPLACE FUNCTION rn_position_events_x(p_arcade_id bigint, p_after_id bigint, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_step_events_x('{}', '{}', '{}', p_arcade_id, p_after_id, p_avg); -- no own events
END
$$;

-- A step's own events (rn_users_events_x's arrays) followed by the position
-- events {reservation_id, arcade_id, position, eta_s, eta_is_estimate} of
-- every waiting reservation of p_arcade_id above p_after_id (by reservation
-- id, booker before player 2), all in one INSERT.
CREATE OR REPLACE FUNCTION rn_step_events_x(p_users bigint[], p_kinds text[], p_payloads jsonb[],
                                 p_arcade_id bigint, p_after_id bigint, p_avg integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    WITH ins AS (
        INSERT INTO user_events (user_id, kind, payload, created_at)
        SELECT e.uid, e.kind, e.payload, clock_timestamp()
        FROM (SELECT 0 AS part, t.n AS k1, 0 AS k2, t.u AS uid, t.k AS kind, t.p AS payload
              FROM unnest(p_users, p_kinds, p_payloads) WITH ORDINALITY AS t (u, k, p, n)
              UNION ALL
              SELECT 1, w.id, p.n, p.uid, 'position',
                     rn_position_payload(w.id, p_arcade_id, w.pos, p_avg)
              FROM (SELECT r.id, r.user_id, r.player2_id,
                           row_number() OVER (ORDER BY r.id)::integer AS pos
                    FROM reservations r
                    WHERE r.arcade_id = p_arcade_id AND r.status = 'waiting') w
              CROSS JOIN LATERAL (VALUES (1, w.user_id), (2, w.player2_id)) AS p (n, uid)
              WHERE w.id > p_after_id) e
        WHERE e.uid IS NOT NULL
        ORDER BY e.part, e.k1, e.k2
        RETURNING id, user_id, kind, payload, created_at)
    SELECT coalesce(jsonb_agg(rn_event_json(ins.id, ins.kind, ins.payload, ins.created_at, 'uid',
                              to_jsonb((SELECT u.firebase_uid FROM users u WHERE u.id = ins.user_id)))
                              ORDER BY ins.id), '[]'::jsonb)
    INTO v_events
    FROM ins;
    RETURN v_events;
END
$$;

-- position events {reservation_id, arcade_id, position, eta_s,
-- eta_is_estimate} to the players of every waiting reservation of the arcade
-- whose id is above p_after_id: those whose position changed when
-- p_after_id left the waiting list (0: all of them).
CREATE OR REPLACE FUNCTION rn_position_events(p_arcade_id bigint, p_after_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_position_events_x(p_arcade_id, p_after_id, rn_avg_game_s(p_arcade_id));
END
$$;

-- The cabinet's own view of its queue: the public snapshot without "type"
-- (the event's kind is cabinet_queue). Never the code: the hub compares it.
CREATE OR REPLACE FUNCTION rn_cabinet_queue_event(p_arcade_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT rn_cabinet_event(p_arcade_id, 'cabinet_queue', rn_queue_snapshot(p_arcade_id) - 'type')
$$;

-- Calls the head of the queue when the arcade is idle, nothing is called or
-- playing, and someone waits: the head becomes called with a deadline of
-- p_deadline_s seconds (120 when NULL or not positive). Events: your_turn
-- (with the code) and reservation called to its players, cabinet_queue to
-- the cabinet, position to every player still waiting. Returns the events
-- (an array, empty when nothing was called).
CREATE OR REPLACE FUNCTION rn_call_next(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_game text;
    v_slot integer;
    v_avg integer;
    v_turn jsonb;
    v_called jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id;
    IF NOT FOUND OR a.deleted_at IS NOT NULL OR a.status <> 'idle' OR a.maintenance THEN
        RETURN '[]'::jsonb;
    END IF;
    IF EXISTS (SELECT 1 FROM reservations
               WHERE arcade_id = a.id AND status IN ('called', 'playing')) THEN
        RETURN '[]'::jsonb;
    END IF;
    -- the head, past those whose slot is in maintenance (0012)
    SELECT * INTO r FROM reservations w
    WHERE w.arcade_id = a.id AND w.status = 'waiting'
      AND NOT EXISTS (SELECT 1 FROM arcade_games ag
                      WHERE ag.arcade_id = a.id AND ag.game_id = w.game_id AND ag.maintenance)
    ORDER BY w.id LIMIT 1
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;

    UPDATE reservations
       SET status = 'called', called_at = now(),
           deadline = now() + make_interval(secs => CASE WHEN coalesce(p_deadline_s, 0) > 0
                                                         THEN p_deadline_s ELSE 120 END)
     WHERE id = r.id
    RETURNING * INTO r;
    SELECT g.name, ag.slot INTO v_game, v_slot
    FROM games g
    LEFT JOIN arcade_games ag ON ag.arcade_id = r.arcade_id AND ag.game_id = g.id
    WHERE g.id = r.game_id;

    v_turn := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'arcade', a.name,
        'code', r.unlock_code, 'deadline_ms', rn_ms(r.deadline),
        'game_id', r.game_id, 'game', v_game, 'slot', v_slot);
    v_called := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
        'status', 'called', 'deadline_ms', rn_ms(r.deadline));
    v_avg := rn_avg_game_s(a.id);
    RETURN rn_users_events_x(ARRAY[r.user_id, r.player2_id, r.user_id, r.player2_id],
                             ARRAY['your_turn', 'your_turn', 'reservation', 'reservation'],
                             ARRAY[v_turn, v_turn, v_called, v_called])
        || jsonb_build_array(rn_cabinet_event(a.id, 'cabinet_queue',
                                              rn_queue_snapshot_x(a, v_avg) - 'type'))
        || rn_position_events_x(a.id, r.id, v_avg);
END
$$;

-- Puts the called reservation (if any) back at the head of the queue: the
-- cabinet went away or into maintenance before it was unlocked, so its
-- players keep their turn (and their code) for when it is back. Returns the
-- events: reservation waiting to its players, positions of everyone waiting.
CREATE OR REPLACE FUNCTION rn_uncall(p_arcade_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r reservations;
BEGIN
    UPDATE reservations SET status = 'waiting', called_at = NULL, deadline = NULL
     WHERE arcade_id = p_arcade_id AND status = 'called'
    RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN '[]'::jsonb;
    END IF;
    RETURN rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
               'status', 'waiting', 'position', rn_position(r),
               'reason', 'cabinet_unavailable'))
        || rn_position_events(p_arcade_id, 0);
END
$$;

-- The outcome of a completed reservation: {scores:[{pseudo, score}] (booker
-- first), winner: pseudo|null, tie}.
CREATE OR REPLACE FUNCTION rn_game_result(p_res reservations)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'scores', coalesce(jsonb_agg(jsonb_build_object('pseudo', u.pseudo, 'score', s.score)
                                     ORDER BY (s.user_id = p_res.user_id) DESC), '[]'::jsonb),
        'winner', (SELECT u2.pseudo FROM scores s2 JOIN users u2 ON u2.id = s2.user_id
                   WHERE s2.reservation_id = p_res.id AND s2.is_winner),
        'tie', coalesce(bool_or(s.is_tie), false))
    FROM scores s JOIN users u ON u.id = s.user_id
    WHERE s.reservation_id = p_res.id
$$;

-- The shape of a reservation's REST body (rn_reservation_json) from its row
-- and the names around it: the arcade's, the game's, its slot, the players'
-- pseudos (booker, player 2), its position (NULL unless waiting) and the
-- arcade's rolling mean game length. LANGUAGE sql and STABLE: inlined, no
-- query of its own, so a caller that holds the names (rn_reserve_do) builds
-- the body without reading them again.
CREATE OR REPLACE FUNCTION rn_reservation_body(p_res reservations, p_arcade text, p_game text,
                                               p_slot integer, p_pseudo1 text, p_pseudo2 text,
                                               p_pos integer, p_avg integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'id', p_res.id, 'arcade_id', p_res.arcade_id, 'arcade', p_arcade,
               'game_id', p_res.game_id, 'game', p_game, 'slot', p_slot,
               'status', p_res.status, 'position', p_pos,
               'eta_s', p_pos * p_avg,
               'eta_is_estimate', true, 'cost', p_res.cost,
               'players', CASE WHEN p_res.player2_id IS NULL
                               THEN jsonb_build_array(p_pseudo1)
                               ELSE jsonb_build_array(p_pseudo1, p_pseudo2) END,
               'created_at', p_res.created_at, 'called_at', p_res.called_at,
               'deadline', p_res.deadline, 'deadline_ms', rn_ms(p_res.deadline),
               'started_at', p_res.started_at, 'ended_at', p_res.ended_at)
$$;

-- rn_reservation_json with the arcade's rolling mean game length and the
-- reservation's position (rn_position) given when the caller knows them
-- (NULL: looked up, and only when needed, i.e. for a waiting reservation).
CREATE OR REPLACE FUNCTION rn_reservation_json_x(p_res reservations, p_avg integer, p_pos integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_pos integer;
    v_body jsonb;
BEGIN
    IF p_res.status = 'waiting' THEN
        v_pos := p_pos;
        IF v_pos IS NULL THEN
            SELECT count(*)::integer INTO v_pos FROM reservations w
            WHERE w.arcade_id = p_res.arcade_id AND w.status = 'waiting' AND w.id <= p_res.id;
        END IF;
        IF p_avg IS NULL THEN
            p_avg := rn_avg_game_s(p_res.arcade_id);
        END IF;
    END IF;
    SELECT rn_reservation_body(p_res, a.name, g.name, ag.slot, u1.pseudo, u2.pseudo, v_pos, p_avg)
    INTO v_body
    FROM arcades a, games g
    LEFT JOIN arcade_games ag ON ag.arcade_id = p_res.arcade_id AND ag.game_id = g.id
    JOIN users u1 ON u1.id = p_res.user_id
    LEFT JOIN users u2 ON u2.id = p_res.player2_id
    WHERE a.id = p_res.arcade_id AND g.id = p_res.game_id;
    IF p_res.status = 'completed' THEN
        v_body := v_body || jsonb_build_object('result', rn_game_result(p_res));
    END IF;
    RETURN v_body;
END
$$;

-- A reservation as its participants see it over REST. Never the code.
CREATE OR REPLACE FUNCTION rn_reservation_json(p_res reservations)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN rn_reservation_json_x(p_res, NULL, NULL);
END
$$;

-- ---------------------------------------------------------------------------
-- Reserve and cancel (REST)

-- The work of rn_reserve once the caller is known and its key claimed.
CREATE OR REPLACE FUNCTION rn_reserve_do(p_user_id bigint, p_arcade_id bigint, p_game_id bigint,
                                         p_player2_uid text, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_game_name text;
    v_slot integer;
    v_pseudo1 text;
    v_pseudo2 text;
    v_min integer;
    v_max integer;
    v_cost integer;
    v_p2 bigint;
    v_players integer;
    v_balance integer;
    v_post jsonb;
    v_pos integer;
    v_avg integer;
    v_reservation jsonb;
    v_body jsonb;
    v_position jsonb;
    v_events jsonb;
    v_called jsonb;
    v_slot_down boolean;
    v_version bigint;
    v_p2_live boolean;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF a.status = 'maintenance' OR a.maintenance THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        coalesce(nullif(a.maintenance_message, ''),
                                 format('arcade %s is in maintenance; try again later', a.id)),
                        jsonb_build_object('reason', 'maintenance'));
    END IF;
    -- offline is only ever set past the grace window (rn_cabinet_offline);
    -- an arcade whose cabinet never connected (epoch 0) takes bookings.
    IF a.status = 'offline' AND a.cabinet_epoch > 0 THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        format('arcade %s is offline; try again later', a.id),
                        jsonb_build_object('reason', 'offline'));
    END IF;
    -- opening hours: closed, or closing within its last call (no hours: open)
    IF a.opens_at IS NOT NULL
       AND (NOT rn_arcade_open_at_x(a, now())
            OR NOT rn_arcade_open_at_x(a, now() + make_interval(mins => a.last_call_min))) THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        format('arcade %s takes bookings from %s until %s minutes before %s (%s)',
                               a.id, to_char(a.opens_at, 'HH24:MI'), a.last_call_min,
                               to_char(a.closes_at, 'HH24:MI'), a.time_zone),
                        jsonb_build_object('reason', 'closed'));
    END IF;
    SELECT g0.name, g0.min_players, g0.max_players, g0.ticket_cost, ag.maintenance, ag.slot
    INTO v_game_name, v_min, v_max, v_cost, v_slot_down, v_slot
    FROM games g0
    JOIN arcade_games ag ON ag.game_id = g0.id AND ag.arcade_id = a.id
    WHERE g0.id = p_game_id AND g0.active;
    IF NOT FOUND THEN
        RETURN rn_error(422, 'game_not_on_arcade',
                        format('game %s is not available on arcade %s', p_game_id, a.id));
    END IF;
    IF v_slot_down THEN
        RETURN rn_error(409, 'arcade_unavailable',
                        format('%s is in maintenance on arcade %s; try again later',
                               v_game_name, a.id),
                        jsonb_build_object('reason', 'slot_maintenance'));
    END IF;

    IF p_player2_uid IS NOT NULL THEN
        SELECT id INTO v_p2 FROM users WHERE firebase_uid = p_player2_uid AND deleted_at IS NULL;
        IF v_p2 = p_user_id THEN
            RETURN rn_error(422, 'not_a_friend', 'player 2 must be a friend, not yourself');
        END IF;
        IF v_p2 IS NULL OR NOT EXISTS (
               SELECT 1 FROM friendships f
               WHERE f.status = 'accepted'
                 AND least(f.requester_id, f.addressee_id) = least(p_user_id, v_p2)
                 AND greatest(f.requester_id, f.addressee_id) = greatest(p_user_id, v_p2)) THEN
            RETURN rn_error(422, 'not_a_friend', 'player 2 must be one of your accepted friends');
        END IF;
    END IF;
    v_players := CASE WHEN v_p2 IS NULL THEN 1 ELSE 2 END;
    IF v_players < v_min OR v_players > v_max THEN
        RETURN rn_error(422, 'wrong_player_count',
                        format('%s is for %s to %s players; this reservation has %s',
                               v_game_name, v_min, v_max, v_players),
                        jsonb_build_object('min_players', v_min, 'max_players', v_max));
    END IF;

    -- Under the user rows' locks again: an admin deleting the booker or player 2
    -- (rn_admin_user_delete: arcade rows then user rows, as here) commits first or waits for us.
    -- Both rows, in id order: two bookings naming the same players (at any
    -- arcades) are serialised here, so the one-active check below is exact.
    -- NO KEY UPDATE: the balance is not a key; it leaves KEY SHARE (what a
    -- foreign key check to users takes: friendships, scores) free.
    -- One statement locks them and reads the booker's balance and both
    -- pseudos (a deleted row is left out: re-checked on its newest version
    -- once locked).
    SELECT max(u.tickets_balance) FILTER (WHERE u.id = p_user_id),
           v_p2 IS NULL OR coalesce(bool_or(u.id = v_p2), false),
           max(u.pseudo) FILTER (WHERE u.id = p_user_id), max(u.pseudo) FILTER (WHERE u.id = v_p2)
      INTO v_balance, v_p2_live, v_pseudo1, v_pseudo2
      FROM (SELECT id, tickets_balance, pseudo FROM users
             WHERE id IN (p_user_id, v_p2) AND deleted_at IS NULL
             ORDER BY id FOR NO KEY UPDATE) u;
    IF v_balance IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    IF NOT v_p2_live THEN
        RETURN rn_error(422, 'not_a_friend', 'player 2 must be one of your accepted friends');
    END IF;
    v_called := rn_active_reservation_x(p_user_id);
    IF v_called IS NOT NULL THEN
        RETURN rn_error(409, 'already_queued',
                        format('you already have a reservation at arcade %s: one at a time',
                               v_called ->> 'arcade_id'), v_called);
    END IF;
    IF v_p2 IS NOT NULL THEN
        v_called := rn_active_reservation_x(v_p2);
        IF v_called IS NOT NULL THEN
            RETURN rn_error(409, 'already_queued',
                            format('player 2 already has a reservation at arcade %s',
                                   v_called ->> 'arcade_id'),
                            v_called || jsonb_build_object('player', 2));
        END IF;
    END IF;
    IF v_balance < v_cost THEN
        RETURN rn_error(409, 'insufficient_tickets',
                        format('%s costs %s tickets; your balance is %s',
                               v_game_name, v_cost, v_balance),
                        jsonb_build_object('balance', v_balance, 'cost', v_cost));
    END IF;

    -- Every check passed: from here on, change things. (An assignment, not
    -- PERFORM: a function call evaluated in place, not one more statement.)
    v_version := rn_queue_bump(a.id);
    INSERT INTO reservations (arcade_id, game_id, user_id, player2_id, unlock_code, cost)
    VALUES (a.id, p_game_id, p_user_id, v_p2, rn_unlock_code(), v_cost)
    RETURNING * INTO r;
    -- The balance was checked under the user's row lock above: this debit
    -- cannot fail. Its balance event goes into the step's one INSERT.
    v_post := rn_ledger_post(p_user_id, -v_cost, 'reservation', p_reservation_id => r.id,
                             p_event => false);
    v_balance := (v_post ->> 'balance')::integer;

    SELECT count(*)::integer INTO v_pos FROM reservations w
    WHERE w.arcade_id = a.id AND w.status = 'waiting' AND w.id <= r.id;
    v_avg := rn_avg_game_s(a.id);
    v_reservation := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', a.id, 'game_id', p_game_id,
        'status', 'waiting', 'position', v_pos);
    -- The new reservation is the queue's tail (its id is the arcade's
    -- highest: ids are drawn under the arcade's lock), so the only position
    -- that changed is its own: the position events rn_step_events_x(...,
    -- r.id - 1, ...) would write, without their query.
    v_position := rn_position_payload(r.id, a.id, v_pos, v_avg);
    v_events := rn_users_events_x(
        ARRAY[p_user_id, r.user_id, r.player2_id, r.user_id, r.player2_id],
        ARRAY['balance', 'reservation', 'reservation', 'position', 'position'],
        ARRAY[v_post -> 'payload', v_reservation, v_reservation, v_position, v_position]);
    -- The body from what this function read (no query): the new row, the
    -- names and the position above.
    v_body := rn_reservation_body(r, a.name, v_game_name, v_slot, v_pseudo1, v_pseudo2, v_pos,
                                  v_avg);
    -- rn_call_next calls only on an idle arcade (this row is locked, and
    -- nothing here changed its status).
    IF a.status = 'idle' THEN
        v_called := rn_call_next(a.id, p_deadline_s);
        IF jsonb_array_length(v_called) > 0 THEN
            v_events := v_events || v_called;
            SELECT * INTO r FROM reservations WHERE id = r.id; -- called already, perhaps
            -- and if not, one ahead of it was: its position is looked up
            v_body := rn_reservation_json_x(r, v_avg, NULL);
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'status', 201,
        'body', jsonb_build_object('reservation', v_body, 'balance', v_balance),
        'events', v_events,
        'arcade', rn_queue_snapshot_x(a, v_avg));
END
$$;

-- POST /api/v1/reservations. Books p_game_id on p_arcade_id for p_uid (and
-- player 2, an accepted friend, by uid), debits the game's ticket cost, queues
-- it at the tail and calls it at once if the cabinet is idle. Idempotent on
-- (user, p_idem_key) with p_req_hash the request's hash (rn_idem_check).
-- 201 {"reservation": {...}, "balance": N}.
CREATE OR REPLACE FUNCTION rn_reserve(p_uid text, p_arcade_id bigint, p_game_id bigint,
                                      p_player2_uid text, p_idem_key text, p_req_hash text,
                                      p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
    v_replay jsonb;
BEGIN
    SELECT id INTO v_user FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    v_replay := rn_idem_check(v_user, p_idem_key, coalesce(p_req_hash, ''));
    IF v_replay IS NOT NULL THEN
        RETURN v_replay;
    END IF;
    RETURN rn_idem_store(v_user, p_idem_key, coalesce(p_req_hash, ''),
                         rn_reserve_do(v_user, p_arcade_id, p_game_id, p_player2_uid,
                                       p_deadline_s));
END
$$;

-- DELETE /api/v1/reservations/{id}: the booker cancels a waiting reservation
-- and gets its cost back (once: ledger_refund_once). 404 for anyone but its
-- players (its existence is not theirs to know), 403 for player 2, 409 once
-- it is no longer waiting (a repeated cancel included).
CREATE OR REPLACE FUNCTION rn_cancel(p_uid text, p_reservation_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
    v_arcade bigint;
    a arcades;
    r reservations;
    v_balance integer;
    v_post jsonb;
    v_avg integer;
    v_cancelled jsonb;
    v_events jsonb;
    v_version bigint;
    v_snapshot jsonb;
    v_users bigint[];
    v_kinds text[];
    v_payloads jsonb[];
BEGIN
    SELECT u.id, r0.arcade_id INTO v_user, v_arcade
      FROM users u LEFT JOIN reservations r0 ON r0.id = p_reservation_id
     WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL;
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    IF v_arcade IS NULL THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = v_arcade FOR UPDATE;
    -- Under the arcade's lock, the booker's waiting reservation is cancelled
    -- in one statement; anything else is told apart afterwards.
    UPDATE reservations SET status = 'cancelled', ended_at = now()
     WHERE id = p_reservation_id AND user_id = v_user AND status = 'waiting'
    RETURNING * INTO r;
    IF NOT FOUND THEN
        SELECT * INTO r FROM reservations WHERE id = p_reservation_id;
        IF r.user_id <> v_user THEN
            IF r.player2_id = v_user THEN
                RETURN rn_error(403, 'not_owner', 'only the player who booked it can cancel it');
            END IF;
            RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
        END IF;
        RETURN rn_error(409, 'not_cancellable',
                        format('the reservation is %s: only a waiting reservation can be cancelled',
                               r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    v_version := rn_queue_bump(v_arcade); -- an assignment: see rn_reserve_do
    v_post := rn_reservation_refund(r, p_event => false); -- its event: in the batch below
    v_balance := (v_post ->> 'balance')::integer;

    v_avg := rn_avg_game_s(v_arcade);
    v_cancelled := jsonb_build_object(
        'reservation_id', r.id, 'arcade_id', r.arcade_id, 'game_id', r.game_id,
        'status', 'cancelled');
    -- The snapshot first: when nobody waits behind the cancelled
    -- reservation (it was the tail), no position changed, and the events
    -- are the step's own, without rn_step_events_x's query for those behind.
    v_snapshot := rn_queue_snapshot_x(a, v_avg);
    v_users := ARRAY[r.user_id, r.user_id, r.player2_id];
    v_kinds := ARRAY['balance', 'reservation', 'reservation'];
    v_payloads := ARRAY[v_post -> 'payload', v_cancelled, v_cancelled];
    IF v_snapshot IS NULL
       OR jsonb_path_exists(v_snapshot, '$.waiting[*] ? (@.reservation_id > $id)',
                            jsonb_build_object('id', r.id)) THEN
        v_events := rn_step_events_x(v_users, v_kinds, v_payloads, v_arcade, r.id, v_avg);
    ELSE
        v_events := rn_users_events_x(v_users, v_kinds, v_payloads);
    END IF;
    RETURN jsonb_build_object(
        'status', 200,
        'body', jsonb_build_object('reservation', rn_reservation_json_x(r, NULL, NULL),
                                   'balance', v_balance, 'refunded', r.cost),
        'events', v_events,
        'arcade', v_snapshot);
END
$$;

-- The cabinet's socket authenticated: a new epoch (returned, for
-- rn_cabinet_offline), offline -> idle (or playing while a reservation still
-- plays; maintenance stays), then the head is called if it can be. The
-- cabinet always gets a cabinet_queue event with its current queue.
-- 200 {"epoch": N, "status": "..."}.
CREATE OR REPLACE FUNCTION rn_cabinet_online(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    PERFORM rn_queue_bump(a.id);
    UPDATE arcades
       SET cabinet_epoch = cabinet_epoch + 1,
           status = CASE
               WHEN status = 'maintenance' THEN 'maintenance'
               WHEN EXISTS (SELECT 1 FROM reservations
                            WHERE arcade_id = p_arcade_id AND status = 'playing') THEN 'playing'
               ELSE 'idle' END
     WHERE id = a.id
    RETURNING * INTO a;
    v_events := rn_call_next(a.id, p_deadline_s);
    IF jsonb_array_length(v_events) = 0 THEN
        v_events := jsonb_build_array(rn_cabinet_queue_event(a.id));
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('epoch', a.cabinet_epoch, 'status', a.status),
                           v_events, a.id);
END
$$;

-- The cabinet has been gone longer than the grace window. Only when no newer
-- connection came since (cabinet_epoch = p_epoch): status -> offline, and a
-- called reservation goes back to the head of the queue (rn_uncall); one
-- that plays stays playing. 200 {"changed": bool}.
CREATE OR REPLACE FUNCTION rn_cabinet_offline(p_arcade_id bigint, p_epoch bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF a.cabinet_epoch <> p_epoch OR a.status = 'offline' THEN
        RETURN rn_answer(200, jsonb_build_object('changed', false, 'epoch', a.cabinet_epoch));
    END IF;
    PERFORM rn_queue_bump(a.id);
    UPDATE arcades SET status = 'offline' WHERE id = a.id;
    v_events := rn_uncall(a.id);
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true, 'epoch', a.cabinet_epoch),
                           v_events, a.id);
END
$$;

-- The cabinet reports its state: 'idle' (ready: the head is called if any;
-- 409 game_in_progress while a reservation plays: it must send game_over) or
-- 'maintenance' (a called reservation goes back to the head of the queue; a
-- playing one plays on). 'playing' is set by a right unlock code, not here:
-- 422. 200 {"status": "...", "changed": bool}.
CREATE OR REPLACE FUNCTION rn_cabinet_status(p_arcade_id bigint, p_state text, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_events jsonb := '[]';
BEGIN
    IF p_state IS NULL OR p_state NOT IN ('idle', 'maintenance') THEN
        RETURN rn_error(422, 'bad_state', 'state must be "idle" or "maintenance"');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF p_state = 'idle' AND EXISTS (SELECT 1 FROM reservations
                                    WHERE arcade_id = a.id AND status = 'playing') THEN
        RETURN rn_error(409, 'game_in_progress',
                        'a reservation is playing: send game_over for it first');
    END IF;
    -- Nothing to do: already in that state, and (idle) nobody could be called.
    IF a.status = p_state
       AND (p_state = 'maintenance'
            OR EXISTS (SELECT 1 FROM reservations WHERE arcade_id = a.id AND status = 'called')
            OR NOT EXISTS (SELECT 1 FROM reservations
                           WHERE arcade_id = a.id AND status = 'waiting')) THEN
        RETURN rn_answer(200, jsonb_build_object('status', a.status, 'changed', false));
    END IF;
    PERFORM rn_queue_bump(a.id);
    UPDATE arcades SET status = p_state WHERE id = a.id;
    IF p_state = 'maintenance' THEN
        v_events := rn_uncall(a.id);
    ELSE
        v_events := rn_call_next(a.id, p_deadline_s);
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('status', p_state, 'changed', true),
                           v_events, a.id);
END
$$;

-- Seconds the arcade's unlock is still locked: after 5 wrong codes within 5
-- minutes, 60 s from the latest of them. 0 when not locked.
-- PL/pgSQL: as LANGUAGE sql it was planned at every call.
CREATE OR REPLACE FUNCTION rn_unlock_locked_for_s(p_arcade_id bigint)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_locked integer;
BEGIN
    SELECT coalesce(max(greatest(0, ceil(extract(epoch FROM
               f.created_at + interval '60 seconds' - now())))::integer), 0)
    INTO v_locked
    FROM (SELECT u.created_at FROM unlock_failures u
          WHERE u.arcade_id = p_arcade_id AND u.created_at > now() - interval '5 minutes'
          ORDER BY u.created_at DESC
          LIMIT 1) f
    WHERE (SELECT count(*) FROM unlock_failures u2
           WHERE u2.arcade_id = p_arcade_id
             AND u2.created_at > f.created_at - interval '5 minutes'
             AND u2.created_at <= f.created_at) >= 5;
    RETURN v_locked;
END
$$;

-- For the hub's constant-time compare: the called reservation and its code
-- (both NULL when nothing is called), and how many seconds unlock is locked
-- (0: not locked). One row for a live arcade, none for an unknown or
-- deleted one. PL/pgSQL: as LANGUAGE sql it was inlined into the hub's unnamed
-- statement, so its body was parsed and planned again at every unlock.
CREATE OR REPLACE FUNCTION rn_called_code(p_arcade_id bigint)
RETURNS TABLE (reservation_id bigint, unlock_code text, locked_for_s integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.unlock_code::text, rn_unlock_locked_for_s(a.id)
    FROM arcades a
    LEFT JOIN reservations r ON r.arcade_id = a.id AND r.status = 'called'
    WHERE a.id = p_arcade_id AND a.deleted_at IS NULL;
END
$$;

-- The hub compared a typed code with the called one (rn_called_code).
-- p_ok: the reservation, if still called, starts playing (single use: 409
-- not_called otherwise); 200 {"ok":true,"reservation_id":N}, reservation
-- playing to its players, unlock_result to the cabinet.
-- Not ok: the failure counts towards the lock; 200 {"ok":false,
-- "attempts_left":N,"locked_for_s":S}. While locked nothing is recorded and
-- even a right code is refused (ok false, attempts_left 0). Failures count
-- for 5 minutes: once a lock has run out, a further wrong code within those
-- minutes locks again.
CREATE OR REPLACE FUNCTION rn_unlock_result(p_arcade_id bigint, p_reservation_id bigint, p_ok boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_found boolean;
    v_locked integer;
    v_recent integer;
    v_events jsonb;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    v_locked := rn_unlock_locked_for_s(a.id);
    IF v_locked > 0 THEN
        RETURN rn_answer(200, jsonb_build_object('ok', false, 'attempts_left', 0,
                                                 'locked_for_s', v_locked));
    END IF;
    SELECT * INTO r FROM reservations
    WHERE id = p_reservation_id AND arcade_id = a.id
    FOR UPDATE;
    v_found := FOUND;

    IF NOT coalesce(p_ok, false) THEN
        DELETE FROM unlock_failures
         WHERE arcade_id = a.id AND created_at < now() - interval '1 hour';
        INSERT INTO unlock_failures (arcade_id, reservation_id)
        VALUES (a.id, CASE WHEN v_found THEN r.id END);
        SELECT count(*) INTO v_recent FROM unlock_failures
        WHERE arcade_id = a.id AND created_at > now() - interval '5 minutes';
        RETURN rn_answer(200, jsonb_build_object(
            'ok', false, 'attempts_left', greatest(0, 5 - v_recent),
            'locked_for_s', rn_unlock_locked_for_s(a.id)));
    END IF;

    IF NOT v_found THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, a.id));
    END IF;
    IF r.status <> 'called' THEN
        RETURN rn_error(409, 'not_called',
                        format('reservation %s is %s, not called', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    PERFORM rn_queue_bump(a.id);
    UPDATE arcades SET status = 'playing' WHERE id = a.id;
    UPDATE reservations SET status = 'playing', started_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    v_events := rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
                    'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
                    'status', 'playing'))
        || jsonb_build_array(rn_cabinet_event(a.id, 'unlock_result', jsonb_build_object(
               'ok', true, 'reservation_id', r.id, 'game_id', r.game_id,
               'players', rn_players(r.user_id, r.player2_id))));
    RETURN rn_queue_answer(200, jsonb_build_object('ok', true, 'reservation_id', r.id),
                           v_events, a.id);
END
$$;

-- The cabinet says the game started: an acknowledgement, changes nothing.
-- 200 {"ok":true} while the reservation plays (or is already over); 404
-- unknown here; 409 not_playing before it was unlocked.
CREATE OR REPLACE FUNCTION rn_game_started(p_arcade_id bigint, p_reservation_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r reservations;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = p_arcade_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, p_arcade_id));
    END IF;
    IF r.status NOT IN ('playing', 'completed') THEN
        RETURN rn_error(409, 'not_playing', format('reservation %s is %s', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    RETURN rn_answer(200, jsonb_build_object('ok', true, 'reservation_id', r.id,
                                             'status', r.status));
END
$$;

-- Game over for the playing reservation. p_scores is a JSON array with one
-- entry per player, either integers in player order ([booker, player 2]) or
-- objects {"pseudo": "...", "score": N} (any order, each player once). The
-- highest score wins; equal scores of a duo are a tie; a solo game has no
-- winner. Saves the scores, completes the reservation, frees the cabinet
-- (playing -> idle; maintenance or offline stay), pushes score and
-- reservation completed to the players and calls the next one.
-- Idempotent: for a completed reservation the same body again, nothing new.
-- 200 {"reservation_id":N,"scores":[{pseudo,score}],"winner":pseudo|null,"tie":bool}.
-- 422 bad_scores, 404 unknown here, 409 not_playing.
CREATE OR REPLACE FUNCTION rn_game_over(p_arcade_id bigint, p_reservation_id bigint, p_scores jsonb,
                             p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_uids bigint[];
    v_scores bigint[] := '{}';
    v_n integer;
    v_kind text;
    v_best bigint;
    v_tie boolean;
    v_result jsonb;
    v_events jsonb := '[]';
    v_e jsonb;
    v_idx integer;
    v_uid bigint;
    v_text text;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations
    WHERE id = p_reservation_id AND arcade_id = a.id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found',
                        format('no reservation %s on arcade %s', p_reservation_id, a.id));
    END IF;
    IF r.status = 'completed' THEN
        RETURN rn_answer(200, jsonb_build_object('reservation_id', r.id) || rn_game_result(r));
    END IF;
    IF r.status <> 'playing' THEN
        RETURN rn_error(409, 'not_playing', format('reservation %s is %s', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;

    -- Validate the scores, all before any change.
    v_uids := CASE WHEN r.player2_id IS NULL THEN ARRAY[r.user_id]
                   ELSE ARRAY[r.user_id, r.player2_id] END;
    v_n := array_length(v_uids, 1);
    IF jsonb_typeof(p_scores) IS DISTINCT FROM 'array' OR jsonb_array_length(p_scores) <> v_n THEN
        RETURN rn_error(422, 'bad_scores', format('scores must be an array of %s entries', v_n));
    END IF;
    v_scores := array_fill(NULL::bigint, ARRAY[v_n]);
    FOR v_idx IN 1 .. v_n LOOP
        v_e := p_scores -> (v_idx - 1);
        v_kind := jsonb_typeof(v_e);
        IF v_kind = 'number' THEN
            v_uid := v_uids[v_idx];
        ELSIF v_kind = 'object' AND jsonb_typeof(v_e -> 'pseudo') = 'string' THEN
            SELECT u.id INTO v_uid FROM users u
            WHERE u.id = ANY (v_uids) AND lower(u.pseudo) = lower(v_e ->> 'pseudo');
            IF NOT FOUND THEN
                RETURN rn_error(422, 'bad_scores',
                                format('%s is not a player of this reservation', v_e ->> 'pseudo'));
            END IF;
            v_e := v_e -> 'score';
        ELSE
            RETURN rn_error(422, 'bad_scores',
                            'each score is an integer or {"pseudo": "...", "score": N}');
        END IF;
        v_text := v_e #>> '{}';
        IF jsonb_typeof(v_e) IS DISTINCT FROM 'number' OR v_text !~ '^-?[0-9]{1,18}$' THEN
            RETURN rn_error(422, 'bad_scores', 'a score is an integer');
        END IF;
        IF v_scores[array_position(v_uids, v_uid)] IS NOT NULL THEN
            RETURN rn_error(422, 'bad_scores', 'each player has exactly one score');
        END IF;
        v_scores[array_position(v_uids, v_uid)] := v_text::bigint;
    END LOOP;

    IF v_n = 2 THEN
        v_best := greatest(v_scores[1], v_scores[2]);
        v_tie := v_scores[1] = v_scores[2];
    ELSE
        v_tie := false;
    END IF;

    PERFORM rn_queue_bump(a.id);
    UPDATE arcades SET status = 'idle' WHERE id = a.id AND status = 'playing';
    INSERT INTO scores (reservation_id, user_id, score, is_winner, is_tie)
    SELECT r.id, v_uids[i], v_scores[i], v_n = 2 AND NOT v_tie AND v_scores[i] = v_best,
           v_tie
    FROM generate_series(1, v_n) AS i;
    UPDATE reservations SET status = 'completed', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;

    v_result := jsonb_build_object('reservation_id', r.id) || rn_game_result(r);
    FOR v_idx IN 1 .. v_n LOOP
        v_events := v_events || jsonb_build_array(rn_user_event(v_uids[v_idx], 'score',
            jsonb_build_object('arcade_id', a.id, 'game_id', r.game_id) || v_result
            || jsonb_build_object('you', jsonb_build_object(
                   'score', v_scores[v_idx],
                   'won', v_n = 2 AND NOT v_tie AND v_scores[v_idx] = v_best))));
    END LOOP;
    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', 'completed'))
        || rn_call_next(a.id, p_deadline_s);
    RETURN rn_queue_answer(200, v_result, v_events, a.id);
END
$$;

-- The answer of a timed transition asked too early (rn_expire, rn_game_timeout):
-- 200 {"changed": false, "status", "retry_in_ms"?}. retry_in_ms when the
-- reservation is still due at p_due (the caller's clock ran ahead of ours).
CREATE OR REPLACE FUNCTION rn_not_due(p_status text, p_due timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_strip_nulls(jsonb_build_object(
        'changed', false, 'status', p_status,
        'retry_in_ms', CASE WHEN p_due IS NOT NULL
                            THEN greatest(0, rn_ms(p_due) - rn_ms(now())) END)))
$$;

-- Nobody pays for the operator's outage.
--
-- A called player's deadline counts from the delivery of their your_turn to
-- a device (the event's ack, by either player of a duo), not from the call,
-- within a maximum: a call lasts at most twice its deadline. So:
--   acked before the deadline      -> deadline = ack + D (at least the call's)
--   acked late, or never acked     -> deadline = call + 2 D (the maximum)
-- where D = the call's own deadline - called_at. A player whose phone never
-- got the event because a hub, Redis or PostgreSQL was away is not expired
-- until the maximum, by which time the catch-up has delivered it.
-- PostgreSQL itself restarting while a player is called (nobody could unlock
-- or ack) gives them D again from the restart. Expiries that were due during
-- an outage are decided after it, on these facts.

-- When the called reservation r is due to expire (see above).
CREATE OR REPLACE FUNCTION rn_call_due(r reservations)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    WITH d AS (
        SELECT r.deadline - r.called_at AS len,
               (SELECT min(e.acked_at) FROM user_events e
                 WHERE e.created_at >= r.called_at
                   AND e.created_at < r.called_at + interval '1 minute'
                   AND e.kind = 'your_turn'
                   AND e.user_id IN (r.user_id, r.player2_id)
                   AND e.payload ->> 'reservation_id' = r.id::text) AS ack)
    SELECT greatest(
               CASE WHEN d.ack IS NOT NULL AND d.ack <= r.deadline
                    THEN greatest(r.deadline, d.ack + d.len)
                    ELSE r.deadline + d.len END,
               CASE WHEN pg_postmaster_start_time() > r.called_at
                    THEN pg_postmaster_start_time() + d.len END)
    FROM d
$$;

-- The called reservation is due (rn_call_due: no-show, counted from the
-- delivery of its your_turn). Conditional: only a reservation still called
-- and due expires, so a second
-- process trying the same changes nothing (200 {"changed":false}, with
-- "retry_in_ms" when it is still called but not yet due: the caller's clock
-- ran ahead). Refunded when p_refund. Then the next one is called.
-- 200 {"changed":true,"reservation_id":N,"refunded":bool}.
CREATE OR REPLACE FUNCTION rn_expire(p_arcade_id bigint, p_reservation_id bigint, p_deadline_s integer,
                          p_refund boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_due timestamptz;
    v_events jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = a.id;
    IF FOUND AND r.status = 'called' THEN
        v_due := rn_call_due(r);
    END IF;
    IF v_due IS NULL OR v_due > now() THEN
        RETURN rn_not_due(r.status, v_due);
    END IF;
    UPDATE reservations SET status = 'expired', ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    PERFORM rn_queue_bump(a.id);

    IF coalesce(p_refund, false) THEN
        v_events := v_events || jsonb_build_array(rn_reservation_refund(r) -> 'event');
    END IF;
    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', 'expired', 'refunded', coalesce(p_refund, false)))
        || rn_call_next(a.id, p_deadline_s);
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true, 'reservation_id', r.id,
                                                   'refunded', coalesce(p_refund, false)),
                           v_events, a.id);
END
$$;

-- GET /api/v1/reservations/{id}: its players only (404 for anyone else).
CREATE OR REPLACE FUNCTION rn_reservation_get(p_uid text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    r reservations;
BEGIN
    SELECT * INTO r FROM reservations
    WHERE id = p_id AND v_user IS NOT NULL AND (user_id = v_user OR player2_id = v_user);
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    RETURN rn_answer(200, jsonb_build_object('reservation', rn_reservation_json(r)));
END
$$;

-- GET /api/v1/reservations/my: the caller's reservations (booked or as
-- player 2), newest first, p_limit (1..100) after the cursor (an id, exclusive).
-- 200 {"items":[...],"next_cursor":id|null}.
CREATE OR REPLACE FUNCTION rn_reservations_my(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_limit integer := least(greatest(coalesce(p_limit, 20), 1), 100);
    v_items jsonb;
    v_count integer;
    v_last bigint;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    SELECT coalesce(jsonb_agg(rn_reservation_json(t.res) ORDER BY (t.res).id DESC), '[]'::jsonb),
           count(*), min((t.res).id)
    INTO v_items, v_count, v_last
    FROM (SELECT r AS res FROM reservations r
          WHERE (r.user_id = v_user OR r.player2_id = v_user)
            AND (p_cursor IS NULL OR r.id < p_cursor)
          ORDER BY r.id DESC
          LIMIT v_limit) t;
    RETURN rn_answer(200, jsonb_build_object(
        'items', v_items,
        'next_cursor', CASE WHEN v_count = v_limit AND EXISTS (
                                 SELECT 1 FROM reservations r
                                 WHERE (r.user_id = v_user OR r.player2_id = v_user)
                                   AND r.id < v_last)
                            THEN v_last END));
END
$$;

-- An arcade as the catalogue shows it: its games by slot and its queue length.
CREATE OR REPLACE FUNCTION rn_public_arcade_json(p_arcade arcades)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_arcade.id, 'name', p_arcade.name, 'location', p_arcade.location,
        'status', p_arcade.status,
        'maintenance', p_arcade.maintenance, 'maintenance_message', p_arcade.maintenance_message,
        'opening_hours', CASE WHEN p_arcade.opens_at IS NOT NULL THEN jsonb_build_object(
            'opens_at', to_char(p_arcade.opens_at, 'HH24:MI'),
            'closes_at', to_char(p_arcade.closes_at, 'HH24:MI'),
            'time_zone', p_arcade.time_zone, 'last_call_min', p_arcade.last_call_min) END,
        'queue_length', (SELECT count(*) FROM reservations r
                         WHERE r.arcade_id = p_arcade.id AND r.status = 'waiting'),
        'avg_game_s', rn_avg_game_s(p_arcade.id),
        'games', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'slot', ag.slot, 'game_id', g.id, 'name', g.name,
                             'ticket_cost', g.ticket_cost, 'min_players', g.min_players,
                             'max_players', g.max_players, 'maintenance', ag.maintenance)
                             ORDER BY ag.slot), '[]'::jsonb)
                  FROM arcade_games ag JOIN games g ON g.id = ag.game_id
                  WHERE ag.arcade_id = p_arcade.id AND g.active))
$$;

-- GET /api/v1/arcades: every live arcade. 200 {"items":[...],"next_cursor":null}.
CREATE OR REPLACE FUNCTION rn_arcades_list()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object(
        'items', coalesce(jsonb_agg(rn_public_arcade_json(a) ORDER BY a.id), '[]'::jsonb),
        'next_cursor', NULL))
    FROM arcades a
    WHERE a.deleted_at IS NULL
$$;

-- GET /api/v1/arcades/{id}. 200 {"arcade": {...}} or 404.
CREATE OR REPLACE FUNCTION rn_arcade_get(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('arcade', rn_public_arcade_json(a)))
         FROM arcades a WHERE a.id = p_id AND a.deleted_at IS NULL),
        rn_error(404, 'arcade_not_found', format('no arcade %s', p_id)))
$$;

-- GET /api/v1/arcades/{id}/queue: the public snapshot, or 404.
CREATE OR REPLACE FUNCTION rn_arcade_queue(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s IS NULL
                THEN rn_error(404, 'arcade_not_found', format('no arcade %s', p_id))
                ELSE rn_answer(200, s) END
    FROM rn_queue_snapshot(p_id) AS s
$$;

-- A game as the catalogue shows it, with the live arcades that have it.
CREATE OR REPLACE FUNCTION rn_public_game_json(p_game games)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p_game.id, 'name', p_game.name, 'description', p_game.description,
        'min_players', p_game.min_players, 'max_players', p_game.max_players,
        'ticket_cost', p_game.ticket_cost, 'active', p_game.active,
        'arcades', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'arcade_id', a.id, 'name', a.name, 'slot', ag.slot,
                                'status', a.status) ORDER BY a.id), '[]'::jsonb)
                    FROM arcade_games ag JOIN arcades a ON a.id = ag.arcade_id
                    WHERE ag.game_id = p_game.id AND a.deleted_at IS NULL))
$$;

-- GET /api/v1/games: the active games. 200 {"items":[...],"next_cursor":null}.
CREATE OR REPLACE FUNCTION rn_games_list()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object(
        'items', coalesce(jsonb_agg(rn_public_game_json(g) ORDER BY g.id), '[]'::jsonb),
        'next_cursor', NULL))
    FROM games g
    WHERE g.active
$$;

-- GET /api/v1/games/{id}. 200 {"game": {...}} or 404.
CREATE OR REPLACE FUNCTION rn_game_get(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('game', rn_public_game_json(g)))
         FROM games g WHERE g.id = p_id),
        rn_error(404, 'game_not_found', format('no game %s', p_id)))
$$;

-- Renews the leases of the arcades a process holds. Returns how many.
CREATE OR REPLACE FUNCTION rn_cabinet_heartbeat(p_arcade_ids bigint[])
RETURNS integer LANGUAGE sql AS $$
    WITH renewed AS (
        UPDATE arcades SET cabinet_seen_at = now()
         WHERE id = ANY (p_arcade_ids) AND deleted_at IS NULL
        RETURNING 1)
    SELECT count(*)::integer FROM renewed
$$;

-- Shows offline every arcade not offline whose lease is older than
-- p_stale_ms. Returns the rn_cabinet_offline answers that changed something
-- (each with its events and snapshot, to publish). Conditional on the epoch,
-- so a cabinet that just came back, or a second process sweeping the same
-- arcade, changes nothing.
-- Cabinet leases (0007): nobody could renew a lease while PostgreSQL was
-- down, so right after a restart every lease looks expired and the first
-- sweep would show every arcade offline (and put its called player back in
-- the queue). A lease counts from its renewal or from PostgreSQL's start,
-- whichever is later: the holders get a whole lease to renew.
CREATE OR REPLACE FUNCTION rn_cabinet_sweep(p_stale_ms integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record;
    answer jsonb;
    answers jsonb := '[]';
    v_since timestamptz := now() - make_interval(secs => p_stale_ms / 1000.0);
BEGIN
    IF pg_postmaster_start_time() >= v_since THEN
        RETURN answers;
    END IF;
    FOR a IN
        SELECT id, cabinet_epoch FROM arcades
         WHERE status <> 'offline' AND deleted_at IS NULL
           AND cabinet_seen_at < v_since
    LOOP
        -- under the row lock again: a renewal that committed meanwhile wins
        PERFORM 1 FROM arcades
          WHERE id = a.id
            AND cabinet_seen_at < v_since
          FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        answer := rn_cabinet_offline(a.id, a.cabinet_epoch);
        IF answer ? 'arcade' THEN
            answers := answers || jsonb_build_array(answer);
        END IF;
    END LOOP;
    RETURN answers;
END
$$;

-- ---------------------------------------------------------------------------
-- Operations (issue 10): void, game timeout, cabinet reconcile, maintenance,
-- one active reservation per player. Every admin action is ONE function
-- taking p_admin_uid and returning an "admin_event": the single place where
-- an audit row can be added.

-- The player's reservation in waiting / called / playing, at any arcade, as
-- booker or player 2: {reservation_id, arcade_id, status}, or NULL. The rule
-- (DESIGN.md, PROTOCOL.md): one active reservation per player across the
-- network, so nobody is ever called at two cabinets at once. rn_reserve_do
-- asks under the players' row locks.
CREATE OR REPLACE FUNCTION rn_active_reservation_x(p_user_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT jsonb_build_object('reservation_id', t.id, 'arcade_id', t.arcade_id,
                              'status', t.status)
    INTO v
    FROM (SELECT r.id, r.arcade_id, r.status FROM reservations r
          WHERE r.user_id = p_user_id AND r.status IN ('waiting', 'called', 'playing')
          UNION ALL
          SELECT r.id, r.arcade_id, r.status FROM reservations r
          WHERE r.player2_id = p_user_id AND r.status IN ('waiting', 'called', 'playing')
          ORDER BY 1 LIMIT 1) t;
    RETURN v;
END
$$;

-- Ends the non-final reservation r of the arcade a (whose row the caller
-- locked) as p_status ('voided' or 'timed_out') for p_reason, refunded
-- through rn_reservation_refund when p_refund. A reservation that held the
-- cabinet (called or playing) frees it (playing -> idle) and the next one is
-- called; the cabinet always learns its new queue. Bumps the queue version.
-- Returns the events: balance, reservation {status, reason, refunded} to its
-- players, then those of the call or the positions.
CREATE OR REPLACE FUNCTION rn_reservation_end_x(a arcades, r reservations, p_status text,
                                                p_reason text, p_refund boolean,
                                                p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_was text := r.status;
    v_refund boolean := coalesce(p_refund, false);
    v_events jsonb := '[]';
    v_called jsonb;
BEGIN
    PERFORM rn_queue_bump(a.id);
    IF v_was = 'playing' THEN
        UPDATE arcades SET status = 'idle' WHERE id = a.id AND status = 'playing';
    END IF;
    UPDATE reservations SET status = p_status, ended_at = now()
     WHERE id = r.id
    RETURNING * INTO r;
    IF v_refund THEN
        v_events := jsonb_build_array(rn_reservation_refund(r) -> 'event');
    END IF;
    v_events := v_events
        || rn_players_event(r.user_id, r.player2_id, 'reservation', jsonb_build_object(
               'reservation_id', r.id, 'arcade_id', a.id, 'game_id', r.game_id,
               'status', p_status, 'reason', p_reason, 'refunded', v_refund));
    IF v_was = 'waiting' THEN
        RETURN v_events || rn_position_events(a.id, r.id);
    END IF;
    v_called := rn_call_next(a.id, p_deadline_s);
    IF jsonb_array_length(v_called) = 0 THEN
        v_called := jsonb_build_array(rn_cabinet_queue_event(a.id));
    END IF;
    RETURN v_events || v_called;
END
$$;

-- POST /api/v1/admin/reservations/{id}/void {reason, refund}: from waiting,
-- called or playing to voided. 404 reservation_not_found, 409 not_voidable
-- (already final), 422 bad_reason. 200 {reservation_id, arcade_id, status,
-- previous_status, reason, refunded} + the arcade's snapshot + admin_event.
CREATE OR REPLACE FUNCTION rn_admin_void(p_admin_uid text, p_reservation_id bigint, p_reason text,
                                         p_refund boolean, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_arcade bigint;
    a arcades;
    r reservations;
    v_was text;
    v_events jsonb;
BEGIN
    IF p_reason IS NULL OR char_length(btrim(p_reason)) NOT BETWEEN 1 AND 500 THEN
        RETURN rn_error(422, 'bad_reason', 'reason: 1 to 500 characters');
    END IF;
    SELECT arcade_id INTO v_arcade FROM reservations WHERE id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'reservation_not_found', 'no such reservation');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = v_arcade FOR UPDATE;
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF r.status NOT IN ('waiting', 'called', 'playing') THEN
        RETURN rn_error(409, 'not_voidable',
                        format('reservation %s is %s already', r.id, r.status),
                        jsonb_build_object('status', r.status));
    END IF;
    v_was := r.status;
    v_events := rn_reservation_end_x(a, r, 'voided', btrim(p_reason), p_refund, p_deadline_s);
    RETURN rn_with_audit(
        rn_queue_answer(200, jsonb_build_object(
                            'reservation_id', r.id, 'arcade_id', a.id, 'status', 'voided',
                            'previous_status', v_was, 'reason', btrim(p_reason),
                            'refunded', coalesce(p_refund, false)),
                        v_events, a.id)
        || jsonb_build_object('admin_event', jsonb_build_object(
               'kind', 'reservation_voided', 'by', p_admin_uid, 'reservation_id', r.id,
               'arcade_id', a.id, 'previous_status', v_was, 'reason', btrim(p_reason),
               'refunded', coalesce(p_refund, false))),
        rn_audit_log(p_admin_uid, 'reservation.void', 'reservation', r.id::text,
                     jsonb_build_object('status', v_was),
                     jsonb_build_object('status', 'voided', 'reason', btrim(p_reason),
                                        'refunded', coalesce(p_refund, false))));
END
$$;

-- When the playing reservation r is due to time out: its start + the game's
-- max_duration_s (p_default_max_s when NULL) + p_grace_s.
CREATE OR REPLACE FUNCTION rn_game_due_x(r reservations, p_default_max_s integer, p_grace_s integer)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_max integer;
BEGIN
    SELECT coalesce(g.max_duration_s, p_default_max_s) INTO v_max FROM games g WHERE g.id = r.game_id;
    RETURN r.started_at + make_interval(secs => greatest(1, coalesce(v_max, 900))
                                                + greatest(0, coalesce(p_grace_s, 0)));
END
$$;

-- The playing reservation ran past its game's maximum duration and grace:
-- timed_out (no score), refunded when p_refund, the next one called.
-- Conditional (still playing and due by the database's clock), so a second
-- process doing the same changes nothing: 200 {"changed": false,
-- "retry_in_ms"?}. 200 {"changed": true, "reservation_id", "refunded"}.
CREATE OR REPLACE FUNCTION rn_game_timeout(p_arcade_id bigint, p_reservation_id bigint,
                                           p_default_max_s integer, p_grace_s integer,
                                           p_refund boolean, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_due timestamptz;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id AND arcade_id = a.id FOR UPDATE;
    IF FOUND AND r.status = 'playing' THEN
        v_due := rn_game_due_x(r, p_default_max_s, p_grace_s);
    END IF;
    IF v_due IS NULL OR v_due > now() THEN
        RETURN rn_not_due(r.status, v_due);
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true, 'reservation_id', r.id,
                                                   'refunded', coalesce(p_refund, false)),
                           rn_reservation_end_x(a, r, 'timed_out', 'max_duration', p_refund,
                                                p_deadline_s),
                           a.id);
END
$$;

-- The playing reservations past their maximum duration and grace, on any
-- live arcade (held by a process or not: a cabinet killed mid-game leaves
-- nobody to time it): [[arcade_id, reservation_id], ...], oldest first, at
-- most 100. Each is then ended by its own rn_game_timeout transaction (one
-- arcade lock per transaction: the lock order stays arcade, then user).
CREATE OR REPLACE FUNCTION rn_game_timeouts_due(p_default_max_s integer, p_grace_s integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_array(t.arcade_id, t.id) ORDER BY t.started_at), '[]')
    INTO v
    FROM (SELECT r.arcade_id, r.id, r.started_at FROM reservations r
          JOIN games g ON g.id = r.game_id
          WHERE r.status = 'playing'
            AND r.started_at + make_interval(secs => greatest(1, coalesce(g.max_duration_s,
                                                                          p_default_max_s, 900))
                                                     + greatest(0, coalesce(p_grace_s, 0)))
                <= now()
          ORDER BY r.started_at
          LIMIT 100) t;
    RETURN v;
END
$$;

-- The cabinet reports what it is doing (status {state: idle | playing,
-- reservation_id?}), at connect or whenever: the hub reconciles. A playing
-- reservation the cabinet does not know (it says idle, or plays another)
-- ends as timed_out with reason cabinet_reset (refunded when p_refund, the
-- rule of the maximum duration), then idle goes on as rn_cabinet_status
-- (the head is called). 'playing' with the playing reservation changes
-- nothing. 200 {"status", "changed", "ended_reservation_id"?,
-- "reservation_status"?} (the status of the reservation it named).
CREATE OR REPLACE FUNCTION rn_cabinet_report(p_arcade_id bigint, p_state text,
                                             p_reservation_id bigint, p_refund boolean,
                                             p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_events jsonb := '[]';
    v_ended bigint;
    v_answer jsonb;
    v_named text;
BEGIN
    IF p_state IS NULL OR p_state NOT IN ('idle', 'playing')
       OR (p_state = 'playing' AND p_reservation_id IS NULL) THEN
        RETURN rn_error(422, 'bad_state',
                        'state must be "idle", or "playing" with its reservation_id');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO r FROM reservations WHERE arcade_id = a.id AND status = 'playing' FOR UPDATE;
    IF FOUND AND (p_state = 'idle' OR r.id <> p_reservation_id) THEN
        v_events := rn_reservation_end_x(a, r, 'timed_out', 'cabinet_reset', p_refund,
                                         p_deadline_s);
        v_ended := r.id;
    END IF;
    IF p_state = 'idle' THEN
        v_answer := rn_cabinet_status(a.id, 'idle', p_deadline_s);
        v_events := v_events || coalesce(v_answer -> 'events', '[]');
    END IF;
    IF p_reservation_id IS NOT NULL THEN
        SELECT status INTO v_named FROM reservations
        WHERE id = p_reservation_id AND arcade_id = a.id;
    END IF;
    SELECT * INTO a FROM arcades WHERE id = a.id;
    IF v_ended IS NULL AND jsonb_array_length(v_events) = 0 THEN
        RETURN rn_answer(200, jsonb_strip_nulls(jsonb_build_object(
            'status', a.status, 'changed', false, 'reservation_status', v_named)));
    END IF;
    RETURN rn_queue_answer(200, jsonb_strip_nulls(jsonb_build_object(
                               'status', a.status, 'changed', true,
                               'ended_reservation_id', v_ended,
                               'reservation_status', v_named)),
                           v_events, a.id);
END
$$;

-- PUT /api/v1/admin/arcades/{id}/maintenance {on, message?, refund_waiting?}.
-- On: nobody is called (a called reservation goes back to the head with its
-- code, rn_uncall; a playing one plays on), new reservations get 409
-- arcade_unavailable with the message; the waiting keep their place, or with
-- p_refund_waiting are voided and refunded (reason maintenance). Off: the
-- head is called if the cabinet is idle. Phones see it in the snapshot
-- (maintenance, maintenance_message); the cabinet gets its cabinet_queue.
-- 404 arcade_not_found, 422 bad_message. 200 {arcade_id, maintenance,
-- maintenance_message, refunded_reservations} + snapshot + admin_event.
CREATE OR REPLACE FUNCTION rn_admin_maintenance(p_admin_uid text, p_arcade_id bigint, p_on boolean,
                                                p_message text, p_refund_waiting boolean,
                                                p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_was boolean;
    v_events jsonb := '[]';
    v_called jsonb;
    v_refunded jsonb := '[]';
BEGIN
    IF p_on IS NULL THEN
        RETURN rn_error(422, 'bad_request', 'on: true or false');
    END IF;
    IF char_length(p_message) > 500 THEN
        RETURN rn_error(422, 'bad_message', 'message: at most 500 characters');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    v_was := a.maintenance;
    UPDATE arcades
       SET maintenance = p_on,
           maintenance_message = CASE WHEN p_on THEN nullif(btrim(p_message), '') END
     WHERE id = a.id
    RETURNING * INTO a;
    PERFORM rn_queue_bump(a.id);
    IF p_on THEN
        v_events := rn_uncall(a.id);
        IF coalesce(p_refund_waiting, false) THEN
            FOR r IN SELECT * FROM reservations
                     WHERE arcade_id = a.id AND status = 'waiting' ORDER BY id FOR UPDATE LOOP
                v_events := v_events
                    || rn_reservation_end_x(a, r, 'voided', 'maintenance', true, p_deadline_s);
                v_refunded := v_refunded || to_jsonb(r.id);
            END LOOP;
        END IF;
        v_events := v_events || jsonb_build_array(rn_cabinet_queue_event(a.id));
    ELSE
        v_called := rn_call_next(a.id, p_deadline_s);
        IF jsonb_array_length(v_called) = 0 THEN
            v_called := jsonb_build_array(rn_cabinet_queue_event(a.id));
        END IF;
        v_events := v_called;
    END IF;
    SELECT * INTO a FROM arcades WHERE id = a.id;
    RETURN rn_with_audit(
        rn_queue_answer(200, jsonb_build_object(
                            'arcade_id', a.id, 'maintenance', a.maintenance,
                            'maintenance_message', a.maintenance_message,
                            'refunded_reservations', v_refunded),
                        v_events, a.id)
        || jsonb_build_object('admin_event', jsonb_build_object(
               'kind', 'arcade_maintenance', 'by', p_admin_uid, 'arcade_id', a.id,
               'before', v_was, 'after', a.maintenance,
               'message', a.maintenance_message, 'refunded_reservations', v_refunded)),
        rn_audit_log(p_admin_uid, 'arcade.maintenance', 'arcade', a.id::text,
                     jsonb_build_object('maintenance', v_was),
                     jsonb_build_object('maintenance', a.maintenance,
                                        'message', a.maintenance_message,
                                        'refunded_reservations', v_refunded)));
END
$$;

-- Opening hours (0012): whether the arcade a is open at p_at, in its time
-- zone. No hours: always. closes_at before opens_at: open past midnight.
CREATE OR REPLACE FUNCTION rn_arcade_open_at_x(a arcades, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    t time;
BEGIN
    IF a.opens_at IS NULL THEN
        RETURN true;
    END IF;
    t := (p_at AT TIME ZONE a.time_zone)::time;
    IF a.opens_at < a.closes_at THEN
        RETURN t >= a.opens_at AND t < a.closes_at;
    END IF;
    RETURN t >= a.opens_at OR t < a.closes_at;
END
$$;

-- PUT /api/v1/admin/arcades/{id}/hours {opens_at: "HH:MM"|null, closes_at:
-- "HH:MM"|null, time_zone?: IANA name, last_call_min?: 0..720}: both times or
-- neither (null: always open). The queue takes no booking within
-- last_call_min of closing (409 arcade_unavailable, reason closed); at
-- closing the waiting are voided and refunded (rn_arcade_close). 404
-- arcade_not_found, 422 bad_hours. 200 {arcade_id, opening_hours, open_now}
-- + admin_event.
CREATE OR REPLACE FUNCTION rn_admin_arcade_hours(p_admin_uid text, p_arcade_id bigint, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_before jsonb;
    v_after jsonb;
    v_open text := p_body ->> 'opens_at';
    v_close text := p_body ->> 'closes_at';
    v_tz text;
    v_last integer;
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    v_tz := coalesce(p_body ->> 'time_zone', a.time_zone);
    IF (v_open IS NULL) <> (v_close IS NULL)
       OR v_open !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
       OR v_close !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' OR v_open = v_close THEN
        RETURN rn_error(422, 'bad_hours',
                        'opens_at and closes_at: both "HH:MM" (and different), or both null');
    END IF;
    IF jsonb_typeof(p_body -> 'time_zone') NOT IN ('string', 'null')
       OR NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = v_tz) THEN
        RETURN rn_error(422, 'bad_hours', 'time_zone: an IANA time zone name (e.g. Europe/Paris)');
    END IF;
    IF p_body ? 'last_call_min' THEN
        IF jsonb_typeof(p_body -> 'last_call_min') <> 'number'
           OR (p_body ->> 'last_call_min') !~ '^[0-9]{1,3}$'
           OR (p_body ->> 'last_call_min')::integer > 720 THEN
            RETURN rn_error(422, 'bad_hours', 'last_call_min: 0 to 720');
        END IF;
        v_last := (p_body ->> 'last_call_min')::integer;
    END IF;
    v_before := rn_public_arcade_json(a) -> 'opening_hours';
    UPDATE arcades
       SET opens_at = v_open::time, closes_at = v_close::time, time_zone = v_tz,
           last_call_min = coalesce(v_last, last_call_min)
     WHERE id = a.id
    RETURNING * INTO a;
    v_after := rn_public_arcade_json(a) -> 'opening_hours';
    RETURN rn_with_audit(
        rn_answer(200, jsonb_build_object('arcade_id', a.id, 'opening_hours', v_after,
                                          'open_now', rn_arcade_open_at_x(a, now())))
        || jsonb_build_object('admin_event', jsonb_build_object(
               'kind', 'arcade_hours', 'by', p_admin_uid, 'arcade_id', a.id,
               'before', v_before, 'after', v_after)),
        rn_audit_log(p_admin_uid, 'arcade.hours', 'arcade', a.id::text,
                     jsonb_build_object('opening_hours', v_before),
                     jsonb_build_object('opening_hours', v_after)));
END
$$;

-- The arcades closed now (opening hours) that still have waiting
-- reservations: [id, ...], for rn_arcade_close, one transaction each.
CREATE OR REPLACE FUNCTION rn_arcades_closing_due()
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(a.id ORDER BY a.id), '[]') INTO v
    FROM arcades a
    WHERE a.opens_at IS NOT NULL AND a.deleted_at IS NULL
      AND NOT rn_arcade_open_at_x(a, now())
      AND EXISTS (SELECT 1 FROM reservations r WHERE r.arcade_id = a.id AND r.status = 'waiting');
    RETURN v;
END
$$;

-- Closing time: the arcade's waiting reservations are voided (reason
-- closed) and refunded; a called or playing one finishes. Conditional (the
-- arcade is closed now, by the database's clock): a second process doing
-- the same changes nothing. 200 {"changed", "refunded_reservations"}.
CREATE OR REPLACE FUNCTION rn_arcade_close(p_arcade_id bigint, p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    r reservations;
    v_events jsonb := '[]';
    v_refunded jsonb := '[]';
BEGIN
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    IF rn_arcade_open_at_x(a, now()) THEN
        RETURN rn_answer(200, jsonb_build_object('changed', false));
    END IF;
    FOR r IN SELECT * FROM reservations
             WHERE arcade_id = a.id AND status = 'waiting' ORDER BY id FOR UPDATE LOOP
        v_events := v_events || rn_reservation_end_x(a, r, 'voided', 'closed', true, p_deadline_s);
        v_refunded := v_refunded || to_jsonb(r.id);
    END LOOP;
    IF jsonb_array_length(v_refunded) = 0 THEN
        RETURN rn_answer(200, jsonb_build_object('changed', false));
    END IF;
    RETURN rn_queue_answer(200, jsonb_build_object('changed', true,
                                                   'refunded_reservations', v_refunded),
                           v_events, a.id);
END
$$;

-- PUT /api/v1/admin/arcades/{id}/slots/{slot}/maintenance {on, refund_waiting?}:
-- one slot of the cabinet in maintenance. While on, its game takes no
-- booking at this arcade (409 arcade_unavailable, reason slot_maintenance)
-- and its waiting reservations keep their place but are not called (the
-- next ones are served past them); with p_refund_waiting they are voided
-- (reason maintenance) and refunded. A called reservation of that slot goes
-- back to the head (rn_uncall) and the next callable one is called. Off: the
-- head is called if the cabinet is idle. 404 arcade_not_found /
-- slot_not_found. 200 {arcade_id, slot, game_id, maintenance,
-- refunded_reservations} + snapshot + admin_event.
CREATE OR REPLACE FUNCTION rn_admin_slot_maintenance(p_admin_uid text, p_arcade_id bigint,
                                                     p_slot integer, p_on boolean,
                                                     p_refund_waiting boolean,
                                                     p_deadline_s integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    ag arcade_games;
    r reservations;
    v_events jsonb := '[]';
    v_called jsonb;
    v_refunded jsonb := '[]';
BEGIN
    IF p_on IS NULL THEN
        RETURN rn_error(422, 'bad_request', 'on: true or false');
    END IF;
    SELECT * INTO a FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', format('no arcade %s', p_arcade_id));
    END IF;
    SELECT * INTO ag FROM arcade_games WHERE arcade_id = a.id AND slot = p_slot FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'slot_not_found', format('arcade %s has no slot %s', a.id, p_slot));
    END IF;
    UPDATE arcade_games SET maintenance = p_on WHERE arcade_id = a.id AND slot = p_slot;
    PERFORM rn_queue_bump(a.id);
    IF p_on THEN
        IF EXISTS (SELECT 1 FROM reservations WHERE arcade_id = a.id AND status = 'called'
                                                AND game_id = ag.game_id) THEN
            v_events := rn_uncall(a.id);
        END IF;
        IF coalesce(p_refund_waiting, false) THEN
            FOR r IN SELECT * FROM reservations
                     WHERE arcade_id = a.id AND status = 'waiting' AND game_id = ag.game_id
                     ORDER BY id FOR UPDATE LOOP
                v_events := v_events
                    || rn_reservation_end_x(a, r, 'voided', 'maintenance', true, p_deadline_s);
                v_refunded := v_refunded || to_jsonb(r.id);
            END LOOP;
        END IF;
    END IF;
    v_called := rn_call_next(a.id, p_deadline_s);
    IF jsonb_array_length(v_called) = 0 THEN
        v_called := jsonb_build_array(rn_cabinet_queue_event(a.id));
    END IF;
    RETURN rn_with_audit(
        rn_queue_answer(200, jsonb_build_object(
                            'arcade_id', a.id, 'slot', p_slot, 'game_id', ag.game_id,
                            'maintenance', p_on, 'refunded_reservations', v_refunded),
                        v_events || v_called, a.id)
        || jsonb_build_object('admin_event', jsonb_build_object(
               'kind', 'slot_maintenance', 'by', p_admin_uid, 'arcade_id', a.id,
               'slot', p_slot, 'game_id', ag.game_id, 'before', ag.maintenance,
               'after', p_on, 'refunded_reservations', v_refunded)),
        rn_audit_log(p_admin_uid, 'slot.maintenance', 'slot', a.id || '/' || p_slot,
                     jsonb_build_object('maintenance', ag.maintenance),
                     jsonb_build_object('maintenance', p_on,
                                        'refunded_reservations', v_refunded)));
END
$$;
