-- 02_tickets: the ticket books: the one ledger function, the one refund
-- function, offers and balance, purchases and payment webhooks, promo codes,
-- and the audit of the books.
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
-- Some answers carry one more member the hub acts on after the commit:
--   "charge":      {"purchase_id", "amount_cents", "currency"}: a purchase is
--                  pending, the hub charges the payment provider now;
--   "admin_event": an event for the admin dashboards (events_publish_admin).
--
-- Ticket rules:
--   * every change of users.tickets_balance goes through rn_ledger_post(),
--     and nothing else writes that column or the ledger (tests/unit/
--     test_migrate.c checks it): the balance and its ledger row (delta,
--     balance_after, kind, reference) move in the same statement pair under
--     the user's row lock, and the user gets a `balance` event {balance,
--     delta, reason[, reservation_id]} in user_events (replayed by `resume`).
--     A debit that would go negative changes nothing;
--   * a reservation's cost goes back through rn_reservation_refund() only,
--     whatever ends it: cancel, expiry with the no-show refund setting, an
--     admin's delete of the user (which cancels), and a future void;
--   * the POSTs that move tickets take an Idempotency-Key (rn_idem_check /
--     rn_idem_store in one transaction, rn_idem_begin / rn_idem_finish for a
--     purchase): the first answer, errors included, is stored;
--   * a purchase is two transactions around the payment: rn_purchase_begin
--     (key claimed + purchase 'pending'), then rn_purchase_settle (succeeded +
--     ledger 'purchase' row + balance + event + key finished; or failed + the
--     402 answer stored for the key);
--   * payment webhooks (rn_payment_webhook) are deduplicated by event id in
--     the same transaction as their effect. The rule for events out of order:
--     the provider is the authority on money, so payment.succeeded credits a
--     purchase that is pending or failed (e.g. we stopped waiting at the
--     timeout, but the provider captured the money later) exactly once (the
--     ledger_purchase_once index), and never touches a succeeded one;
--     payment.failed only moves pending -> failed, and is ignored once the
--     purchase succeeded. The answer stored for an Idempotency-Key is the
--     first one and is never rewritten.

-- THE ledger function: the only code that changes users.tickets_balance or
-- writes a ledger row. Moves p_delta tickets for a user: balance, ledger row
-- and `balance` event {balance, delta, reason: p_kind, reservation_id (when
-- p_reservation_id is given)}, all or nothing. Returns {"balance",
-- "ledger_id", "payload", "event"} (event: the user_events row for the
-- answer's "events"), or NULL when a debit would take the balance below zero
-- (then nothing changed). The user row is locked by the UPDATE until the
-- transaction ends, so ledger ids follow balance order.
-- p_event false: the event is not written here, and "event" is absent: the
-- caller writes "payload" as a `balance` event in its own batch of events
-- (the queue's hot paths write all of a step's events in one INSERT:
-- 03_queue.sql's header).
CREATE OR REPLACE FUNCTION rn_ledger_post(p_user_id bigint, p_delta integer, p_kind text,
                               p_purchase_id bigint DEFAULT NULL,
                               p_promo_use_id bigint DEFAULT NULL,
                               p_reservation_id bigint DEFAULT NULL,
                               p_reason text DEFAULT NULL,
                               p_actor_uid text DEFAULT NULL,
                               p_event boolean DEFAULT true)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_balance integer;
    v_ledger_id bigint;
    v_payload jsonb;
BEGIN
    -- One statement for both writes (one executor start, not two): no
    -- ledger row when the balance would go below zero.
    WITH u AS (
        UPDATE users SET tickets_balance = tickets_balance + p_delta
         WHERE id = p_user_id AND tickets_balance + p_delta >= 0
        RETURNING tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, purchase_id, promo_use_id,
                        reservation_id, reason, actor_uid)
    SELECT p_user_id, p_delta, u.tickets_balance, p_kind, p_purchase_id, p_promo_use_id,
           p_reservation_id, p_reason, p_actor_uid
      FROM u
    RETURNING id, balance_after INTO v_ledger_id, v_balance;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_payload := jsonb_build_object('balance', v_balance, 'delta', p_delta, 'reason', p_kind);
    IF p_reservation_id IS NOT NULL THEN
        v_payload := v_payload || jsonb_build_object('reservation_id', p_reservation_id);
    END IF;
    IF NOT p_event THEN
        RETURN jsonb_build_object('balance', v_balance, 'ledger_id', v_ledger_id,
                                  'payload', v_payload);
    END IF;
    RETURN jsonb_build_object('balance', v_balance, 'ledger_id', v_ledger_id,
                              'payload', v_payload,
                              'event', rn_user_event(p_user_id, 'balance', v_payload));
END
$$;

-- THE refund: gives a reservation's cost back to its booker, through the
-- ledger (kind 'refund'; once per reservation: ledger_refund_once). Every
-- way a reservation can end with a refund comes here: cancel (rn_cancel),
-- no-show expiry with the refund setting (rn_expire), an admin's delete of
-- the user (rn_admin_user_delete cancels), and a void. The caller holds the
-- arcade row, then the reservation row, and has set its final status.
-- Returns rn_ledger_post's answer (p_event as there).
CREATE OR REPLACE FUNCTION rn_reservation_refund(p_res reservations, p_event boolean DEFAULT true)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN rn_ledger_post(p_res.user_id, p_res.cost, 'refund', p_reservation_id => p_res.id,
                          p_event => p_event);
END
$$;

-- ---------------------------------------------------------------------------
-- Offers, balance, purchases

-- GET /tickets/offers: the active offers.
CREATE OR REPLACE FUNCTION rn_offers()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object('items', coalesce(jsonb_agg(
        jsonb_build_object('id', o.id, 'name', o.name, 'tickets', o.tickets,
                           'price_cents', o.price_cents, 'currency', o.currency)
        ORDER BY o.price_cents, o.id), '[]'::jsonb)))
    FROM ticket_offers o WHERE o.active
$$;

CREATE OR REPLACE FUNCTION rn_balance(p_uid text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('balance', u.tickets_balance))
           FROM users u WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL),
        rn_not_registered())
$$;

CREATE OR REPLACE FUNCTION rn_purchase_json(p purchases)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'offer_id', p.offer_id, 'tickets', p.tickets,
        'price_cents', p.price_cents, 'currency', p.currency, 'provider', p.provider,
        'status', p.status, 'failure', p.failure, 'created_at', p.created_at,
        'updated_at', p.updated_at)
$$;

-- GET /tickets/purchase-history: the caller's purchases, newest first, a page
-- of p_limit before the id p_cursor (NULL: from the newest).
CREATE OR REPLACE FUNCTION rn_purchase_history(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_purchase_json(p) ORDER BY p.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM purchases
                  WHERE user_id = v_user AND (p_cursor IS NULL OR id < p_cursor)
                  ORDER BY id DESC LIMIT p_limit + 1) p),
        p_limit));
END
$$;

-- POST /tickets/purchase, first transaction: claims the Idempotency-Key and
-- records the purchase as pending at the offer's current terms. Answers 202
-- with "charge" when the hub must now charge the provider; anything else
-- (an error, a replayed answer) is the final answer.
CREATE OR REPLACE FUNCTION rn_purchase_begin(p_uid text, p_key text, p_hash text, p_offer_id bigint,
                                  p_provider text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_answer jsonb;
    o ticket_offers;
    p purchases;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    v_answer := rn_idem_begin(v_user, p_key, p_hash);
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    SELECT * INTO o FROM ticket_offers WHERE id = p_offer_id AND active;
    IF NOT FOUND THEN
        RETURN rn_idem_finish(v_user, p_key,
                              rn_error(404, 'offer_not_found', 'no such ticket offer'));
    END IF;
    INSERT INTO purchases (user_id, offer_id, tickets, price_cents, currency, provider,
                           idempotency_key)
    VALUES (v_user, o.id, o.tickets, o.price_cents, o.currency, p_provider, p_key)
    RETURNING * INTO p;
    RETURN rn_answer(202, jsonb_build_object('purchase_id', p.id, 'status', p.status))
        || jsonb_build_object('charge', jsonb_build_object(
               'purchase_id', p.id, 'amount_cents', p.price_cents, 'currency', p.currency));
END
$$;

-- The dashboard's view of a purchase that just changed state.
CREATE OR REPLACE FUNCTION rn_purchase_admin_event(p purchases)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('kind', 'purchase',
                              'uid', (SELECT firebase_uid FROM users WHERE id = p.user_id))
        || rn_purchase_json(p)
$$;

-- Stores p_answer for the purchase's key unless an answer is already there
-- (the first answer is the one replayed), and returns what the key holds, so
-- that every caller of one key sees one answer. Events of p_answer are kept.
CREATE OR REPLACE FUNCTION rn_purchase_key_answer(p purchases, p_answer jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k idempotency_keys;
BEGIN
    IF p.idempotency_key IS NULL THEN
        RETURN p_answer;
    END IF;
    UPDATE idempotency_keys
       SET status_code = (p_answer->>'status')::integer, response = (p_answer->'body')::text
     WHERE user_id = p.user_id AND key = p.idempotency_key AND status_code IS NULL;
    IF FOUND THEN
        RETURN p_answer;
    END IF;
    SELECT * INTO k FROM idempotency_keys WHERE user_id = p.user_id AND key = p.idempotency_key;
    IF NOT FOUND THEN -- expired meanwhile
        RETURN p_answer;
    END IF;
    RETURN p_answer || jsonb_build_object('status', k.status_code, 'body', k.response::jsonb);
END
$$;

-- Credits a locked purchase once: succeeded + ledger 'purchase' + balance +
-- event + key answer. A purchase already succeeded is left alone (the answer
-- is the stored one, without events).
CREATE OR REPLACE FUNCTION rn_purchase_credit(p purchases, p_provider_ref text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_post jsonb;
BEGIN
    IF p.status = 'succeeded' THEN
        RETURN rn_purchase_key_answer(p, rn_answer(201, jsonb_build_object(
            'purchase', rn_purchase_json(p),
            'balance', (SELECT tickets_balance FROM users WHERE id = p.user_id))));
    END IF;
    UPDATE purchases
       SET status = 'succeeded', failure = NULL,
           provider_ref = coalesce(p_provider_ref, provider_ref)
     WHERE id = p.id
    RETURNING * INTO p;
    v_post := rn_ledger_post(p.user_id, p.tickets, 'purchase', p_purchase_id => p.id);
    RETURN rn_purchase_key_answer(p, rn_answer(201,
               jsonb_build_object('purchase', rn_purchase_json(p), 'balance', v_post->'balance'),
               jsonb_build_array(v_post->'event')))
        || jsonb_build_object('admin_event', rn_purchase_admin_event(p));
END
$$;

-- Fails a locked pending purchase with a 402 answer {code, message,
-- purchase_id}. A purchase no longer pending is left alone.
CREATE OR REPLACE FUNCTION rn_purchase_fail(p purchases, p_code text, p_message text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF p.status = 'pending' THEN
        UPDATE purchases SET status = 'failed', failure = p_code WHERE id = p.id
        RETURNING * INTO p;
        RETURN rn_purchase_key_answer(p, rn_error(402, p_code, p_message,
                   jsonb_build_object('purchase_id', p.id)))
            || jsonb_build_object('admin_event', rn_purchase_admin_event(p));
    END IF;
    IF p.status = 'succeeded' THEN
        RETURN rn_purchase_credit(p, NULL);
    END IF;
    RETURN rn_purchase_key_answer(p, rn_error(402, coalesce(p.failure, p_code), p_message,
               jsonb_build_object('purchase_id', p.id)));
END
$$;

-- POST /tickets/purchase, second transaction: the provider answered (or the
-- hub stopped waiting). p_ok: credit; else fail with p_code / p_message.
CREATE OR REPLACE FUNCTION rn_purchase_settle(p_purchase_id bigint, p_ok boolean, p_provider_ref text,
                                   p_code text, p_message text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    p purchases;
BEGIN
    SELECT * INTO p FROM purchases WHERE id = p_purchase_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'purchase_not_found', 'no such purchase');
    END IF;
    IF p_ok THEN
        RETURN rn_purchase_credit(p, p_provider_ref);
    END IF;
    RETURN rn_purchase_fail(p, p_code, p_message);
END
$$;

-- POST /payments/webhook (signature checked by the hub): one provider event,
-- deduplicated by its id in this transaction. Always 200 for an event we
-- understood, so the provider stops retrying; 404 (nothing recorded) for a
-- purchase we do not know.
CREATE OR REPLACE FUNCTION rn_payment_webhook(p_event_id text, p_type text, p_purchase_id bigint,
                                   p_provider_ref text, p_provider text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    p purchases;
    v_before text;
    v_result jsonb;
    v_audit jsonb := '[]';
BEGIN
    IF p_type NOT IN ('payment.succeeded', 'payment.failed') THEN
        INSERT INTO webhook_events (event_id, provider, payload)
        VALUES (p_event_id, p_provider, p_payload) ON CONFLICT DO NOTHING;
        RETURN rn_answer(200, jsonb_build_object('received', true, 'effect', 'ignored'));
    END IF;
    SELECT * INTO p FROM purchases WHERE id = p_purchase_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'purchase_not_found', 'no such purchase');
    END IF;
    INSERT INTO webhook_events (event_id, provider, payload)
    VALUES (p_event_id, p_provider, p_payload) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN rn_answer(200, jsonb_build_object('received', true, 'effect', 'duplicate'));
    END IF;
    v_before := p.status;
    IF p_type = 'payment.succeeded' THEN
        v_result := rn_purchase_credit(p, p_provider_ref);
    ELSIF v_before = 'pending' THEN
        v_result := rn_purchase_fail(p, 'payment_failed', 'the payment failed');
    ELSE
        v_result := rn_answer(200, '{}');
    END IF;
    SELECT * INTO p FROM purchases WHERE id = p_purchase_id;
    -- a provider event that changed a purchase is in the audit log (06_audit)
    IF v_before <> p.status THEN
        v_audit := jsonb_build_array(rn_audit_log(
            'webhook:' || p_provider, 'purchase.' || p.status, 'purchase', p.id::text,
            jsonb_build_object('status', v_before),
            jsonb_build_object('status', p.status, 'event_id', p_event_id, 'type', p_type,
                               'user_id', p.user_id, 'tickets', p.tickets)));
    END IF;
    RETURN jsonb_build_object('audit', v_audit,
        'status', 200, 'events', v_result->'events',
        'body', jsonb_build_object(
            'received', true, 'purchase_id', p.id, 'status', p.status,
            'effect', CASE WHEN v_before = p.status THEN 'none'
                           WHEN p.status = 'succeeded' THEN 'credited' ELSE 'failed' END))
        || CASE WHEN v_result ? 'admin_event'
                THEN jsonb_build_object('admin_event', v_result->'admin_event')
                ELSE '{}'::jsonb END;
END
$$;

-- Pending purchases nobody settled (the hub died during the payment): failed
-- after p_age, their keys answered. A late payment.succeeded still credits them.
CREATE OR REPLACE FUNCTION rn_purchase_expire_stale(p_age interval DEFAULT interval '1 hour')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p purchases;
    n integer := 0;
BEGIN
    FOR p IN SELECT * FROM purchases
              WHERE status = 'pending' AND created_at < now() - p_age
              ORDER BY id FOR UPDATE SKIP LOCKED LOOP
        PERFORM rn_purchase_fail(p, 'payment_abandoned',
                                 'the payment was not confirmed in time');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The hub's periodic sweep: expired idempotency keys and stale purchases.
CREATE OR REPLACE FUNCTION rn_tickets_sweep()
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('purchases_failed', rn_purchase_expire_stale(),
                              'keys_expired', rn_idem_expire())
$$;

-- POST /promos/use {code}. The code's row is locked first, so every check and
-- the use itself see the latest uses count: the global limit is never passed
-- and a user's second use is refused, however many requests race.
CREATE OR REPLACE FUNCTION rn_promo_use(p_uid text, p_key text, p_hash text, p_code text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_answer jsonb;
    v_code text := upper(btrim(coalesce(p_code, '')));
    c promo_codes;
    v_use bigint;
    v_post jsonb;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    v_answer := rn_idem_check(v_user, p_key, p_hash);
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    SELECT * INTO c FROM promo_codes WHERE code = v_code FOR UPDATE;
    IF NOT FOUND THEN
        v_answer := rn_error(404, 'promo_not_found', 'no such promo code');
    ELSIF NOT c.active THEN
        v_answer := rn_error(422, 'promo_inactive', 'this promo code is not active');
    ELSIF now() < c.valid_from THEN
        v_answer := rn_error(422, 'promo_expired', 'this promo code is not valid yet',
                             jsonb_build_object('valid_from', c.valid_from));
    ELSIF c.valid_until IS NOT NULL AND now() >= c.valid_until THEN
        v_answer := rn_error(422, 'promo_expired', 'this promo code has expired',
                             jsonb_build_object('valid_until', c.valid_until));
    ELSIF EXISTS (SELECT 1 FROM promo_uses WHERE promo_id = c.id AND user_id = v_user) THEN
        v_answer := rn_error(409, 'promo_already_used', 'you have already used this promo code');
    ELSIF c.max_uses IS NOT NULL AND c.uses >= c.max_uses THEN
        v_answer := rn_error(409, 'promo_exhausted', 'this promo code has been used up');
    END IF;
    IF v_answer IS NOT NULL THEN
        RETURN rn_idem_store(v_user, p_key, p_hash, v_answer);
    END IF;
    UPDATE promo_codes SET uses = uses + 1 WHERE id = c.id;
    INSERT INTO promo_uses (promo_id, user_id) VALUES (c.id, v_user) RETURNING id INTO v_use;
    v_post := rn_ledger_post(v_user, c.tickets, 'promo', p_promo_use_id => v_use);
    RETURN rn_idem_store(v_user, p_key, p_hash, rn_answer(200,
        jsonb_build_object('code', c.code, 'tickets', c.tickets, 'balance', v_post->'balance'),
        jsonb_build_array(v_post->'event')));
END
$$;

-- GET /promos/history: the caller's promo uses, newest first.
CREATE OR REPLACE FUNCTION rn_promo_history(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'id', x.id, 'code', x.code, 'tickets', x.delta, 'used_at', x.created_at)
                    ORDER BY x.id DESC), '[]'::jsonb)
           FROM (SELECT pu.id, pc.code, l.delta, pu.created_at
                   FROM promo_uses pu
                   JOIN promo_codes pc ON pc.id = pu.promo_id
                   LEFT JOIN ledger l ON l.promo_use_id = pu.id AND l.kind = 'promo'
                  WHERE pu.user_id = v_user AND (p_cursor IS NULL OR pu.id < p_cursor)
                  ORDER BY pu.id DESC LIMIT p_limit + 1) x),
        p_limit));
END
$$;

-- ---------------------------------------------------------------------------
-- Audit: `retronova-hub audit`. One row per discrepancy, none when the books
-- balance:
--   balance       a user's tickets_balance <> sum(ledger.delta)
--   ledger_chain  a ledger row's balance_after <> the running sum of its user
--   purchase      a succeeded purchase without exactly one 'purchase' row of
--                 +tickets for its user, or another purchase with one
--   promo_use     a promo use without exactly one 'promo' row for its user
--   promo_count   a code whose uses column <> its promo_uses rows
--   reservation   a reservation without exactly one 'reservation' debit of
--                 -cost for its user
--   refund        a refund (+cost, the booking user) missing for a cancelled
--                 reservation, more than one for an expired, voided or
--                 timed_out one (refunded by choice or by policy), or one for a
--                 reservation in any other state
--   orphan        a ledger, reservation, user_events or idempotency_keys row
--                 naming a user, arcade, game or reservation that does not exist (their
--                 foreign keys were dropped by migration 0017: every writer
--                 takes the id from a row it holds, and those rows are never
--                 deleted)
CREATE OR REPLACE FUNCTION rn_audit()
RETURNS TABLE (kind text, detail text) LANGUAGE sql STABLE AS $$
    SELECT 'balance', format('user %s (%s): tickets_balance %s but sum(ledger.delta) %s',
                             u.id, u.firebase_uid, u.tickets_balance, coalesce(l.total, 0))
      FROM users u
      LEFT JOIN (SELECT user_id, sum(delta) AS total FROM ledger GROUP BY user_id) l
        ON l.user_id = u.id
     WHERE u.tickets_balance <> coalesce(l.total, 0) OR u.tickets_balance < 0
    UNION ALL
    SELECT 'ledger_chain', format('ledger row %s (user %s): balance_after %s but running sum %s',
                                  x.id, x.user_id, x.balance_after, x.running)
      FROM (SELECT id, user_id, balance_after,
                   sum(delta) OVER (PARTITION BY user_id ORDER BY id) AS running
              FROM ledger) x
     WHERE x.balance_after <> x.running
    UNION ALL
    SELECT 'purchase', format('purchase %s (user %s, %s, %s tickets): %s purchase ledger row(s) '
                              'totalling %s', p.id, p.user_id, p.status, p.tickets, l.n, l.total)
      FROM purchases p
      CROSS JOIN LATERAL (
          SELECT count(*) AS n, coalesce(sum(delta), 0) AS total,
                 coalesce(bool_and(user_id = p.user_id), true) AS same_user
            FROM ledger WHERE ledger.kind = 'purchase' AND purchase_id = p.id) l
     WHERE (p.status = 'succeeded' AND (l.n <> 1 OR l.total <> p.tickets OR NOT l.same_user))
        OR (p.status <> 'succeeded' AND l.n <> 0)
    UNION ALL
    SELECT 'promo_use', format('promo use %s (user %s, code %s): %s promo ledger row(s)',
                               pu.id, pu.user_id, pu.promo_id, l.n)
      FROM promo_uses pu
      CROSS JOIN LATERAL (
          SELECT count(*) AS n, coalesce(bool_and(user_id = pu.user_id), true) AS same_user
            FROM ledger WHERE ledger.kind = 'promo' AND promo_use_id = pu.id) l
     WHERE l.n <> 1 OR NOT l.same_user
    UNION ALL
    SELECT 'promo_count', format('promo code %s (%s): uses %s but %s promo_uses row(s)',
                                 c.id, c.code, c.uses, n.n)
      FROM promo_codes c
      CROSS JOIN LATERAL (SELECT count(*) AS n FROM promo_uses WHERE promo_id = c.id) n
     WHERE c.uses <> n.n
    UNION ALL
    SELECT 'reservation', format('reservation %s (user %s, %s, cost %s): %s reservation ledger '
                                 'row(s) totalling %s', r.id, r.user_id, r.status, r.cost,
                                 l.n, l.total)
      FROM reservations r
      CROSS JOIN LATERAL (
          SELECT count(*) AS n, coalesce(sum(delta), 0) AS total,
                 coalesce(bool_and(user_id = r.user_id), true) AS same_user
            FROM ledger WHERE ledger.kind = 'reservation' AND reservation_id = r.id) l
     WHERE l.n <> 1 OR l.total <> -r.cost OR NOT l.same_user
    UNION ALL
    SELECT 'refund', format('reservation %s (user %s, %s, cost %s): %s refund ledger row(s) '
                            'totalling %s', r.id, r.user_id, r.status, r.cost, l.n, l.total)
      FROM reservations r
      CROSS JOIN LATERAL (
          SELECT count(*) AS n, coalesce(sum(delta), 0) AS total,
                 coalesce(bool_and(user_id = r.user_id), true) AS same_user
            FROM ledger WHERE ledger.kind = 'refund' AND reservation_id = r.id) l
     WHERE NOT l.same_user
        OR (l.n > 0 AND l.total <> l.n * r.cost)
        OR (r.status = 'cancelled' AND l.n <> 1)
        OR (r.status IN ('expired', 'voided', 'timed_out') AND l.n > 1)
        OR (r.status NOT IN ('cancelled', 'voided', 'expired', 'timed_out') AND l.n <> 0)
    UNION ALL
    SELECT 'orphan', format('%s %s: no %s %s', o.what, o.id, o.parent, o.ref)
      FROM (SELECT 'ledger row' AS what, l.id::text AS id, 'user' AS parent, l.user_id AS ref
              FROM ledger l WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = l.user_id)
            UNION ALL
            SELECT 'ledger row', l.id::text, 'reservation', l.reservation_id
              FROM ledger l
             WHERE l.reservation_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = l.reservation_id)
            UNION ALL
            SELECT 'event', e.id::text, 'user', e.user_id
              FROM user_events e
             WHERE e.user_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = e.user_id)
            UNION ALL
            SELECT 'idempotency key', k.key, 'user', k.user_id
              FROM idempotency_keys k
             WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = k.user_id)
            UNION ALL
            SELECT 'reservation', r.id::text, p.parent, p.ref
              FROM reservations r
             CROSS JOIN LATERAL (VALUES ('arcade', r.arcade_id), ('game', r.game_id),
                                        ('user', r.user_id), ('user', r.player2_id)) AS p (parent, ref)
             WHERE p.ref IS NOT NULL
               AND NOT CASE p.parent
                       WHEN 'arcade' THEN EXISTS (SELECT 1 FROM arcades a WHERE a.id = p.ref)
                       WHEN 'game' THEN EXISTS (SELECT 1 FROM games g WHERE g.id = p.ref)
                       ELSE EXISTS (SELECT 1 FROM users u WHERE u.id = p.ref) END) o
$$;

-- ---------------------------------------------------------------------------
-- The ledger shown to its owner (GET /tickets/balance, GET /tickets/ledger)

-- One ledger row as its owner sees it (the admin who adjusted is not named).
CREATE OR REPLACE FUNCTION rn_ledger_json(l ledger)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', l.id, 'delta', l.delta, 'balance_after', l.balance_after, 'kind', l.kind,
        'reason', l.reason, 'purchase_id', l.purchase_id, 'reservation_id', l.reservation_id,
        'created_at', l.created_at)
$$;

-- GET /tickets/balance: 200 {balance, recent: the p_recent newest ledger rows}.
CREATE OR REPLACE FUNCTION rn_balance_recent(p_uid text, p_recent integer)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    u users;
BEGIN
    SELECT * INTO u FROM users WHERE firebase_uid = p_uid AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, jsonb_build_object(
        'balance', u.tickets_balance,
        'recent', (SELECT coalesce(jsonb_agg(rn_ledger_json(l) ORDER BY l.id DESC), '[]'::jsonb)
                     FROM (SELECT * FROM ledger WHERE user_id = u.id
                           ORDER BY id DESC LIMIT p_recent) l)));
END
$$;

-- GET /tickets/ledger?limit&cursor: the caller's ledger, newest first, a
-- page of p_limit before ledger id p_cursor. Items: rn_ledger_json.
CREATE OR REPLACE FUNCTION rn_ledger_list(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_not_registered();
    END IF;
    RETURN rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_ledger_json(l) ORDER BY l.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM ledger
                  WHERE user_id = v_user AND (p_cursor IS NULL OR id < p_cursor)
                  ORDER BY id DESC LIMIT p_limit + 1) l),
        p_limit));
END
$$;
