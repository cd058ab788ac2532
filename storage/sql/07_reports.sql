-- 07_reports: the business numbers: GET /admin/stats and GET
-- /admin/reports/{revenue|plays|queues} (hub/api_reports.c). Read only.
--
-- Layout (storage/sql/README.md): every SQL function lives in exactly one
-- domain file, as CREATE OR REPLACE; applied after the migrations in
-- file-name order. The indexes these queries need are in
-- storage/migrations/0014_ops_numbers.sql.
--
-- Definitions (also in README.md "Business numbers"):
--   * periods: "today" since 00:00 UTC; "7d" and "30d" rolling, up to now;
--   * tickets_sold / revenue_cents: ledger 'purchase' rows (credited
--     purchases) of the period, priced by their purchase;
--   * tickets_spent: reservation debits of the period minus refunds of the
--     period (ledger kinds 'reservation' and 'refund');
--   * ticket_float: the sum of all balances (deleted users included: their
--     tickets come back with them), what the network owes its players;
--   * games_played: reservations completed in the period;
--   * no_show_rate (30 d): called reservations that expired / all called
--     reservations that ended (completed, expired, voided) in 30 d;
--   * avg_wait_s (30 d): booking to call; avg_game_s (30 d): start to end of
--     completed games.
-- Every query reads one time range through an index of 0014, so each costs
-- the rows of its period, not of the table (tests/bench/reports.sh).

-- The numbers of one period starting at p_since.
CREATE OR REPLACE FUNCTION rn_stats_period(p_since timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'tickets_sold', (SELECT coalesce(sum(l.delta), 0) FROM ledger l
                          WHERE l.kind = 'purchase' AND l.created_at >= p_since),
        'revenue_cents', (SELECT coalesce(sum(p.price_cents), 0) FROM ledger l
                          JOIN purchases p ON p.id = l.purchase_id
                          WHERE l.kind = 'purchase' AND l.created_at >= p_since),
        'purchases', (SELECT count(*) FROM ledger l
                       WHERE l.kind = 'purchase' AND l.created_at >= p_since),
        'tickets_spent', (SELECT coalesce(-sum(l.delta), 0) FROM ledger l
                           WHERE l.kind = 'reservation' AND l.created_at >= p_since)
                       - (SELECT coalesce(sum(l.delta), 0) FROM ledger l
                           WHERE l.kind = 'refund' AND l.created_at >= p_since),
        'games_played', (SELECT count(*) FROM reservations r
                          WHERE r.status = 'completed' AND r.ended_at >= p_since))
$$;

-- GET /admin/stats. p_online: what the hub knows of every process
-- ({"players_online": N, "processes": N}, hub/deploy.c), passed through.
-- 200 {players_online, processes, reservations: {status: count} (live ones
-- now, ended ones over 30 d), today, 7d, 30d: rn_stats_period, ticket_float,
-- no_show_rate, avg_wait_s, avg_game_s, at}.
CREATE OR REPLACE FUNCTION rn_admin_stats(p_online jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_30d timestamptz := now() - interval '30 days';
    v_by_status jsonb;
    v_called bigint;
    v_no_show bigint;
BEGIN
    SELECT jsonb_object_agg(s.status, coalesce(c.n, 0)) INTO v_by_status
    FROM unnest(ARRAY['waiting', 'called', 'playing', 'completed', 'cancelled', 'expired',
                      'voided']) AS s (status)
    LEFT JOIN (SELECT r.status, count(*) AS n FROM reservations r
               WHERE r.status IN ('waiting', 'called', 'playing')
               GROUP BY r.status
               UNION ALL
               SELECT r.status, count(*) FROM reservations r
               WHERE r.created_at >= v_30d
                 AND r.status NOT IN ('waiting', 'called', 'playing')
               GROUP BY r.status) c ON c.status = s.status;
    SELECT count(*) FILTER (WHERE r.status IN ('completed', 'expired', 'voided')),
           count(*) FILTER (WHERE r.status = 'expired')
    INTO v_called, v_no_show
    FROM reservations r
    WHERE r.created_at >= v_30d AND r.called_at IS NOT NULL;
    RETURN rn_answer(200, jsonb_build_object(
        'players_online', coalesce((p_online ->> 'players_online')::bigint, 0),
        'processes', coalesce((p_online ->> 'processes')::bigint, 1),
        'reservations', v_by_status,
        'today', rn_stats_period(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
        '7d', rn_stats_period(now() - interval '7 days'),
        '30d', rn_stats_period(v_30d),
        'ticket_float', (SELECT coalesce(sum(tickets_balance), 0) FROM users),
        'no_show_rate', CASE WHEN v_called > 0
                             THEN round(v_no_show::numeric / v_called, 4) ELSE 0 END,
        'avg_wait_s', (SELECT coalesce(round(avg(extract(epoch FROM r.called_at - r.created_at))
                                             ::numeric, 1), 0)
                         FROM reservations r
                        WHERE r.created_at >= v_30d AND r.called_at IS NOT NULL),
        'avg_game_s', (SELECT coalesce(round(avg(extract(epoch FROM r.ended_at - r.started_at))
                                             ::numeric, 1), 0)
                         FROM reservations r
                        WHERE r.status = 'completed' AND r.ended_at >= v_30d
                          AND r.started_at IS NOT NULL),
        'at', now()));
END
$$;

-- GET /admin/reports/{kind}?from&to&arcade_id&game_id: one row per day (UTC),
-- arcade and game over [p_from, p_to] (dates, both included, at most 366
-- days), in order of day, arcade, game. kind:
--   revenue: tickets by ledger day: spent (reservation debits), refunded,
--            net = spent - refunded, bookings (debits);
--   plays:   completed games by end day: games, duo_games, players (distinct
--            users of both seats), tickets (their cost), avg_game_s;
--   queues:  reservations by booking day: reservations, completed, cancelled,
--            expired (no-shows), voided, avg_wait_s (booking to call).
-- 200 {kind, from, to, arcade_id, game_id, columns: [names in CSV order],
-- items: [{...}], totals: {summable columns}}; 404 unknown_report; 422
-- invalid_range.
CREATE OR REPLACE FUNCTION rn_admin_report(p_kind text, p_from date, p_to date,
                                           p_arcade_id bigint, p_game_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_lo timestamptz := p_from::timestamp AT TIME ZONE 'UTC';
    v_hi timestamptz := (p_to + 1)::timestamp AT TIME ZONE 'UTC';
    v_columns text[];
    v_sum text[];
    v_items jsonb;
BEGIN
    IF p_kind NOT IN ('revenue', 'plays', 'queues') THEN
        RETURN rn_error(404, 'unknown_report', 'reports: revenue, plays, queues');
    END IF;
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from OR p_to - p_from > 365 THEN
        RETURN rn_error(422, 'invalid_range', 'from <= to, at most 366 days');
    END IF;
    IF p_kind = 'revenue' THEN
        v_columns := ARRAY['day', 'arcade_id', 'arcade', 'game_id', 'game', 'bookings',
                           'tickets_spent', 'tickets_refunded', 'tickets_net'];
        v_sum := ARRAY['bookings', 'tickets_spent', 'tickets_refunded', 'tickets_net'];
        SELECT jsonb_agg(to_jsonb(t) ORDER BY t.day, t.arcade_id, t.game_id) INTO v_items
        FROM (SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, r.arcade_id,
                     a.name AS arcade, r.game_id, g.name AS game,
                     count(*) FILTER (WHERE l.kind = 'reservation') AS bookings,
                     coalesce(-sum(l.delta) FILTER (WHERE l.kind = 'reservation'), 0)
                         AS tickets_spent,
                     coalesce(sum(l.delta) FILTER (WHERE l.kind = 'refund'), 0)
                         AS tickets_refunded,
                     -sum(l.delta) AS tickets_net
              FROM ledger l
              JOIN reservations r ON r.id = l.reservation_id
              JOIN arcades a ON a.id = r.arcade_id
              JOIN games g ON g.id = r.game_id
              WHERE l.kind IN ('reservation', 'refund')
                AND l.created_at >= v_lo AND l.created_at < v_hi
                AND (p_arcade_id IS NULL OR r.arcade_id = p_arcade_id)
                AND (p_game_id IS NULL OR r.game_id = p_game_id)
              GROUP BY 1, 2, 3, 4, 5) t;
    ELSIF p_kind = 'plays' THEN
        v_columns := ARRAY['day', 'arcade_id', 'arcade', 'game_id', 'game', 'games',
                           'duo_games', 'players', 'tickets', 'avg_game_s'];
        v_sum := ARRAY['games', 'duo_games', 'tickets'];
        SELECT jsonb_agg(to_jsonb(t) ORDER BY t.day, t.arcade_id, t.game_id) INTO v_items
        FROM (SELECT (r.ended_at AT TIME ZONE 'UTC')::date AS day, r.arcade_id,
                     a.name AS arcade, r.game_id, g.name AS game, count(*) AS games,
                     count(*) FILTER (WHERE r.player2_id IS NOT NULL) AS duo_games,
                     (SELECT count(DISTINCT p) FROM unnest(array_agg(r.user_id)
                          || array_agg(r.player2_id)) AS p) AS players,
                     sum(r.cost) AS tickets,
                     round(avg(extract(epoch FROM r.ended_at - r.started_at))::numeric, 1)
                         AS avg_game_s
              FROM reservations r
              JOIN arcades a ON a.id = r.arcade_id
              JOIN games g ON g.id = r.game_id
              WHERE r.status = 'completed' AND r.ended_at >= v_lo AND r.ended_at < v_hi
                AND (p_arcade_id IS NULL OR r.arcade_id = p_arcade_id)
                AND (p_game_id IS NULL OR r.game_id = p_game_id)
              GROUP BY 1, 2, 3, 4, 5) t;
    ELSE
        v_columns := ARRAY['day', 'arcade_id', 'arcade', 'game_id', 'game', 'reservations',
                           'completed', 'cancelled', 'expired', 'voided', 'avg_wait_s'];
        v_sum := ARRAY['reservations', 'completed', 'cancelled', 'expired', 'voided'];
        SELECT jsonb_agg(to_jsonb(t) ORDER BY t.day, t.arcade_id, t.game_id) INTO v_items
        FROM (SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.arcade_id,
                     a.name AS arcade, r.game_id, g.name AS game, count(*) AS reservations,
                     count(*) FILTER (WHERE r.status = 'completed') AS completed,
                     count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
                     count(*) FILTER (WHERE r.status = 'expired') AS expired,
                     count(*) FILTER (WHERE r.status = 'voided') AS voided,
                     round(avg(extract(epoch FROM r.called_at - r.created_at))::numeric, 1)
                         AS avg_wait_s
              FROM reservations r
              JOIN arcades a ON a.id = r.arcade_id
              JOIN games g ON g.id = r.game_id
              WHERE r.created_at >= v_lo AND r.created_at < v_hi
                AND (p_arcade_id IS NULL OR r.arcade_id = p_arcade_id)
                AND (p_game_id IS NULL OR r.game_id = p_game_id)
              GROUP BY 1, 2, 3, 4, 5) t;
    END IF;
    v_items := coalesce(v_items, '[]'::jsonb);
    RETURN rn_answer(200, jsonb_build_object(
        'kind', p_kind, 'from', p_from, 'to', p_to, 'arcade_id', p_arcade_id,
        'game_id', p_game_id, 'columns', to_jsonb(v_columns), 'items', v_items,
        'totals', (SELECT coalesce(jsonb_object_agg(c, (SELECT coalesce(sum((e ->> c)::numeric), 0)
                                                       FROM jsonb_array_elements(v_items) e)),
                                   '{}'::jsonb)
                   FROM unnest(v_sum) AS c)));
END
$$;
