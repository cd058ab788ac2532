-- 0004_tickets: profiles, ticket purchases, promo codes, admin catalogue and
-- ticket adjustments, and the audit of the books.
--
-- Every function called by a REST handler answers one jsonb value (hub/db.h):
-- {"status", "body", "events"}; business errors are answers returned before
-- anything is written. Some answers carry one more member the hub acts on
-- after the commit:
--   "charge":      {"purchase_id", "amount_cents", "currency"}: a purchase is
--                  pending, the hub charges the payment provider now;
--   "admin_event": an event for the admin dashboards (events_publish_admin).
--
-- Ticket rules:
--   * every change of users.tickets_balance goes through rn_ledger_post(): the
--     balance and its ledger row (delta, balance_after, kind, reference) move
--     in the same statement pair under the user's row lock, and the user gets
--     a `balance` event {balance, delta, reason} in user_events (replayed by
--     `resume`). A debit that would go negative changes nothing;
--   * the POSTs that move tickets take an Idempotency-Key (rn_idem_begin /
--     rn_idem_finish of 0002): the first answer, errors included, is stored;
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

-- Who made an adjustment (the admin's uid); NULL for every other kind.
ALTER TABLE ledger ADD COLUMN actor_uid text;

-- The Idempotency-Key of the request that created the purchase (NULL without
-- one), so that whichever transaction settles it stores the answer for it.
ALTER TABLE purchases ADD COLUMN idempotency_key text;
CREATE INDEX purchases_pending_idx ON purchases (created_at) WHERE status = 'pending';

-- ---------------------------------------------------------------------------
-- Ledger

-- Moves p_delta tickets for a user: balance, ledger row and `balance` event,
-- all or nothing. Returns {"balance", "ledger_id", "event"} (event: the
-- user_events row for the answer's "events"), or NULL when a debit would take
-- the balance below zero (then nothing changed). The user row is locked by the
-- UPDATE until the transaction ends, so ledger ids follow balance order.
CREATE FUNCTION rn_ledger_post(p_user_id bigint, p_delta integer, p_kind text,
                               p_purchase_id bigint DEFAULT NULL,
                               p_promo_use_id bigint DEFAULT NULL,
                               p_reservation_id bigint DEFAULT NULL,
                               p_reason text DEFAULT NULL,
                               p_actor_uid text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_balance integer;
    v_ledger_id bigint;
BEGIN
    UPDATE users SET tickets_balance = tickets_balance + p_delta
     WHERE id = p_user_id AND tickets_balance + p_delta >= 0
    RETURNING tickets_balance INTO v_balance;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger (user_id, delta, balance_after, kind, purchase_id, promo_use_id,
                        reservation_id, reason, actor_uid)
    VALUES (p_user_id, p_delta, v_balance, p_kind, p_purchase_id, p_promo_use_id,
            p_reservation_id, p_reason, p_actor_uid)
    RETURNING id INTO v_ledger_id;
    RETURN jsonb_build_object(
        'balance', v_balance, 'ledger_id', v_ledger_id,
        'event', rn_user_event(p_user_id, 'balance',
                               jsonb_build_object('balance', v_balance, 'delta', p_delta,
                                                  'reason', p_kind)));
END
$$;

-- A page of a list: p_items (already limited to p_limit + 1 rows, newest
-- first) -> {"items": [first p_limit], "next_cursor": id of the last one as
-- text when there is more, else null}.
CREATE FUNCTION rn_page(p_items jsonb, p_limit integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'items', coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(p_items)
                           WITH ORDINALITY AS t (e, n) WHERE n <= p_limit), '[]'::jsonb),
        'next_cursor', CASE WHEN jsonb_array_length(p_items) > p_limit
                            THEN to_jsonb((p_items -> (p_limit - 1) ->> 'id')) END)
$$;

-- ---------------------------------------------------------------------------
-- Profiles

CREATE FUNCTION rn_user_json(u users)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uid', u.firebase_uid, 'pseudo', u.pseudo, 'first_name', u.first_name,
        'last_name', u.last_name, 'phone', u.phone, 'role', u.role,
        'tickets_balance', u.tickets_balance, 'created_at', u.created_at)
$$;

-- POST /auth/register: the caller's profile from its token's uid. Pseudos are
-- unique whatever their case (users_pseudo_lower_key), phones unique.
CREATE FUNCTION rn_register(p_uid text, p_admin boolean, p_pseudo text, p_first_name text,
                            p_last_name text, p_phone text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    u users;
    v_phone text := nullif(regexp_replace(coalesce(p_phone, ''), '[\s.()-]', '', 'g'), '');
    v_constraint text;
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE firebase_uid = p_uid) THEN
        RETURN rn_error(409, 'already_registered', 'this account already has a profile');
    END IF;
    IF p_pseudo IS NULL OR p_pseudo !~ '^[A-Za-z0-9_.-]{3,32}$' THEN
        RETURN rn_error(422, 'invalid_pseudo',
                        'pseudo: 3 to 32 letters, digits, ".", "_" or "-"');
    END IF;
    IF char_length(btrim(coalesce(p_first_name, ''))) NOT BETWEEN 1 AND 64
       OR char_length(btrim(coalesce(p_last_name, ''))) NOT BETWEEN 1 AND 64 THEN
        RETURN rn_error(422, 'invalid_name', 'first_name and last_name: 1 to 64 characters');
    END IF;
    IF v_phone IS NOT NULL AND v_phone !~ '^\+?[0-9]{6,15}$' THEN
        RETURN rn_error(422, 'invalid_phone', 'phone: 6 to 15 digits, optionally after "+"');
    END IF;
    IF EXISTS (SELECT 1 FROM users WHERE lower(pseudo) = lower(p_pseudo)) THEN
        RETURN rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                        jsonb_build_object('field', 'pseudo'));
    END IF;
    IF v_phone IS NOT NULL AND EXISTS (SELECT 1 FROM users WHERE phone = v_phone) THEN
        RETURN rn_error(409, 'phone_taken', 'this phone number is used by another account',
                        jsonb_build_object('field', 'phone'));
    END IF;
    BEGIN
        INSERT INTO users (firebase_uid, pseudo, first_name, last_name, phone, role)
        VALUES (p_uid, p_pseudo, btrim(p_first_name), btrim(p_last_name), v_phone,
                CASE WHEN p_admin THEN 'admin' ELSE 'player' END)
        RETURNING * INTO u;
    EXCEPTION WHEN unique_violation THEN
        -- a concurrent registration won the race: same answers as above
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        RETURN CASE v_constraint
            WHEN 'users_pseudo_lower_key' THEN
                rn_error(409, 'pseudo_taken', 'this pseudo is taken',
                         jsonb_build_object('field', 'pseudo'))
            WHEN 'users_phone_key' THEN
                rn_error(409, 'phone_taken', 'this phone number is used by another account',
                         jsonb_build_object('field', 'phone'))
            ELSE rn_error(409, 'already_registered', 'this account already has a profile') END;
    END;
    RETURN rn_answer(201, jsonb_build_object('user', rn_user_json(u)));
END
$$;

-- GET /auth/me
CREATE FUNCTION rn_me(p_uid text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('user', rn_user_json(u)))
           FROM users u WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL),
        rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register'))
$$;

-- ---------------------------------------------------------------------------
-- Tickets

CREATE FUNCTION rn_offers()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, jsonb_build_object('items', coalesce(jsonb_agg(
        jsonb_build_object('id', o.id, 'name', o.name, 'tickets', o.tickets,
                           'price_cents', o.price_cents, 'currency', o.currency)
        ORDER BY o.price_cents, o.id), '[]'::jsonb)))
    FROM ticket_offers o WHERE o.active
$$;

CREATE FUNCTION rn_balance(p_uid text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT rn_answer(200, jsonb_build_object('balance', u.tickets_balance))
           FROM users u WHERE u.firebase_uid = p_uid AND u.deleted_at IS NULL),
        rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register'))
$$;

CREATE FUNCTION rn_purchase_json(p purchases)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'offer_id', p.offer_id, 'tickets', p.tickets,
        'price_cents', p.price_cents, 'currency', p.currency, 'provider', p.provider,
        'status', p.status, 'failure', p.failure, 'created_at', p.created_at,
        'updated_at', p.updated_at)
$$;

-- GET /tickets/purchase-history: the caller's purchases, newest first, a page
-- of p_limit before the id p_cursor (NULL: from the newest).
CREATE FUNCTION rn_purchase_history(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register');
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
CREATE FUNCTION rn_purchase_begin(p_uid text, p_key text, p_hash text, p_offer_id bigint,
                                  p_provider text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
    v_answer jsonb;
    o ticket_offers;
    p purchases;
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register');
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
CREATE FUNCTION rn_purchase_admin_event(p purchases)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('kind', 'purchase',
                              'uid', (SELECT firebase_uid FROM users WHERE id = p.user_id))
        || rn_purchase_json(p)
$$;

-- Stores p_answer for the purchase's key unless an answer is already there
-- (the first answer is the one replayed), and returns what the key holds, so
-- that every caller of one key sees one answer. Events of p_answer are kept.
CREATE FUNCTION rn_purchase_key_answer(p purchases, p_answer jsonb)
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
CREATE FUNCTION rn_purchase_credit(p purchases, p_provider_ref text)
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
CREATE FUNCTION rn_purchase_fail(p purchases, p_code text, p_message text)
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
CREATE FUNCTION rn_purchase_settle(p_purchase_id bigint, p_ok boolean, p_provider_ref text,
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
CREATE FUNCTION rn_payment_webhook(p_event_id text, p_type text, p_purchase_id bigint,
                                   p_provider_ref text, p_provider text, p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    p purchases;
    v_before text;
    v_result jsonb;
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
    RETURN jsonb_build_object(
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
CREATE FUNCTION rn_purchase_expire_stale(p_age interval DEFAULT interval '1 hour')
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
CREATE FUNCTION rn_tickets_sweep()
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('purchases_failed', rn_purchase_expire_stale(),
                              'keys_expired', rn_idem_expire())
$$;

-- ---------------------------------------------------------------------------
-- Promo codes

-- POST /promos/use {code}. The code's row is locked first, so every check and
-- the use itself see the latest uses count: the global limit is never passed
-- and a user's second use is refused, however many requests race.
CREATE FUNCTION rn_promo_use(p_uid text, p_key text, p_hash text, p_code text)
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
        RETURN rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register');
    END IF;
    v_answer := rn_idem_begin(v_user, p_key, p_hash);
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
        RETURN rn_idem_finish(v_user, p_key, v_answer);
    END IF;
    UPDATE promo_codes SET uses = uses + 1 WHERE id = c.id;
    INSERT INTO promo_uses (promo_id, user_id) VALUES (c.id, v_user) RETURNING id INTO v_use;
    v_post := rn_ledger_post(v_user, c.tickets, 'promo', p_promo_use_id => v_use);
    RETURN rn_idem_finish(v_user, p_key, rn_answer(200,
        jsonb_build_object('code', c.code, 'tickets', c.tickets, 'balance', v_post->'balance'),
        jsonb_build_array(v_post->'event')));
END
$$;

-- GET /promos/history: the caller's promo uses, newest first.
CREATE FUNCTION rn_promo_history(p_uid text, p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_user bigint := rn_user_id(p_uid);
BEGIN
    IF v_user IS NULL THEN
        RETURN rn_error(404, 'not_registered', 'no profile yet: POST /api/v1/auth/register');
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
-- Admin

CREATE FUNCTION rn_promo_json(c promo_codes)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'code', c.code, 'tickets', c.tickets, 'max_uses', c.max_uses,
        'uses', c.uses, 'valid_from', c.valid_from, 'valid_until', c.valid_until,
        'active', c.active, 'created_at', c.created_at)
$$;

-- Reads an optional member of a JSON body as text, checking its JSON type:
-- NULL when absent or null; raises 22023 (answered 400 by the callers) when
-- it has another type.
CREATE FUNCTION rn_body_field(p_body jsonb, p_name text, p_type text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_body -> p_name IS NULL OR jsonb_typeof(p_body -> p_name) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_body -> p_name) <> p_type THEN
        RAISE EXCEPTION '% must be a %', p_name, p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_body ->> p_name;
END
$$;

-- POST /admin/promo-codes {code, tickets, max_uses?, valid_from?,
-- valid_until?, active?}
CREATE FUNCTION rn_admin_promo_create(p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c promo_codes;
    v_code text;
    v_tickets integer;
    v_max integer;
    v_from timestamptz;
    v_until timestamptz;
    v_active boolean;
BEGIN
    BEGIN
        v_code := upper(btrim(rn_body_field(p_body, 'code', 'string')));
        v_tickets := rn_body_field(p_body, 'tickets', 'number')::integer;
        v_max := rn_body_field(p_body, 'max_uses', 'number')::integer;
        v_from := coalesce(rn_body_field(p_body, 'valid_from', 'string')::timestamptz, now());
        v_until := rn_body_field(p_body, 'valid_until', 'string')::timestamptz;
        v_active := coalesce(rn_body_field(p_body, 'active', 'boolean')::boolean, true);
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR invalid_datetime_format OR datetime_field_overflow
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF v_code IS NULL OR v_code !~ '^[A-Z0-9_-]{3,64}$' THEN
        RETURN rn_error(422, 'invalid_code', 'code: 3 to 64 letters, digits, "_" or "-"');
    END IF;
    IF v_tickets IS NULL OR v_tickets NOT BETWEEN 1 AND 100000 THEN
        RETURN rn_error(422, 'invalid_tickets', 'tickets: 1 to 100000');
    END IF;
    IF v_max IS NOT NULL AND v_max < 1 THEN
        RETURN rn_error(422, 'invalid_max_uses', 'max_uses: at least 1 (omit for unlimited)');
    END IF;
    IF v_until IS NOT NULL AND v_until <= v_from THEN
        RETURN rn_error(422, 'invalid_window', 'valid_until must be after valid_from');
    END IF;
    INSERT INTO promo_codes (code, tickets, max_uses, valid_from, valid_until, active)
    VALUES (v_code, v_tickets, v_max, v_from, v_until, v_active)
    ON CONFLICT (code) DO NOTHING
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RETURN rn_error(409, 'promo_code_taken', 'a promo code with this code exists');
    END IF;
    RETURN rn_answer(201, jsonb_build_object('promo_code', rn_promo_json(c)));
END
$$;

-- GET /admin/promo-codes: every code with its use count, newest first.
CREATE FUNCTION rn_admin_promo_list(p_limit integer, p_cursor bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT rn_answer(200, rn_page(
        (SELECT coalesce(jsonb_agg(rn_promo_json(c) || jsonb_build_object(
                    'use_count', (SELECT count(*) FROM promo_uses u WHERE u.promo_id = c.id))
                    ORDER BY c.id DESC), '[]'::jsonb)
           FROM (SELECT * FROM promo_codes
                  WHERE p_cursor IS NULL OR id < p_cursor
                  ORDER BY id DESC LIMIT p_limit + 1) c),
        p_limit))
$$;

-- PUT /admin/users/{uid}/tickets {delta, reason}: an 'adjustment' ledger row.
-- The Idempotency-Key is scoped to the admin's own profile.
CREATE FUNCTION rn_admin_adjust_tickets(p_admin_uid text, p_key text, p_hash text,
                                        p_target_uid text, p_delta integer, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_admin bigint := rn_user_id(p_admin_uid);
    v_target bigint := rn_user_id(p_target_uid);
    v_answer jsonb;
    v_post jsonb;
BEGIN
    IF p_key IS NOT NULL AND v_admin IS NULL THEN
        RETURN rn_error(404, 'not_registered',
                        'an Idempotency-Key needs a profile: POST /api/v1/auth/register');
    END IF;
    v_answer := rn_idem_begin(v_admin, p_key, p_hash);
    IF v_answer IS NOT NULL THEN
        RETURN v_answer;
    END IF;
    IF v_target IS NULL THEN
        v_answer := rn_error(404, 'user_not_found', 'no such user');
    ELSIF p_delta IS NULL OR p_delta = 0 OR abs(p_delta) > 1000000 THEN
        v_answer := rn_error(422, 'invalid_delta', 'delta: a non-zero integer within +-1000000');
    ELSIF char_length(btrim(coalesce(p_reason, ''))) NOT BETWEEN 1 AND 200 THEN
        v_answer := rn_error(422, 'invalid_reason', 'reason: 1 to 200 characters');
    ELSE
        v_post := rn_ledger_post(v_target, p_delta, 'adjustment', p_reason => btrim(p_reason),
                                 p_actor_uid => p_admin_uid);
        IF v_post IS NULL THEN
            v_answer := rn_error(409, 'insufficient_tickets',
                                 'the adjustment would take the balance below zero',
                                 jsonb_build_object('balance', (SELECT tickets_balance FROM users
                                                                 WHERE id = v_target)));
        ELSE
            v_answer := rn_answer(200, jsonb_build_object(
                            'uid', p_target_uid, 'delta', p_delta, 'balance', v_post->'balance',
                            'ledger_id', v_post->'ledger_id'),
                            jsonb_build_array(v_post->'event'))
                || jsonb_build_object('admin_event', jsonb_build_object(
                       'kind', 'adjustment', 'uid', p_target_uid, 'delta', p_delta,
                       'balance', v_post->'balance', 'reason', btrim(p_reason),
                       'by', p_admin_uid));
        END IF;
    END IF;
    IF v_admin IS NULL THEN
        RETURN v_answer;
    END IF;
    RETURN rn_idem_finish(v_admin, p_key, v_answer);
END
$$;

CREATE FUNCTION rn_game_json(g games)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'name', g.name, 'description', g.description,
        'min_players', g.min_players, 'max_players', g.max_players,
        'ticket_cost', g.ticket_cost, 'active', g.active)
$$;

-- POST /admin/games {name, ticket_cost, description?, min_players?,
-- max_players?, active?}
CREATE FUNCTION rn_admin_game_create(p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    g games;
    v_name text;
    v_description text;
    v_min integer;
    v_max integer;
    v_cost integer;
    v_active boolean;
BEGIN
    BEGIN
        v_name := btrim(rn_body_field(p_body, 'name', 'string'));
        v_description := coalesce(rn_body_field(p_body, 'description', 'string'), '');
        v_min := coalesce(rn_body_field(p_body, 'min_players', 'number')::integer, 1);
        v_max := coalesce(rn_body_field(p_body, 'max_players', 'number')::integer, v_min);
        v_cost := rn_body_field(p_body, 'ticket_cost', 'number')::integer;
        v_active := coalesce(rn_body_field(p_body, 'active', 'boolean')::boolean, true);
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation
                   OR numeric_value_out_of_range THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF v_cost IS NULL OR v_cost NOT BETWEEN 1 AND 1000 THEN
        RETURN rn_error(422, 'invalid_ticket_cost', 'ticket_cost: 1 to 1000');
    END IF;
    IF v_min NOT BETWEEN 1 AND 2 OR v_max NOT BETWEEN 1 AND 2 OR v_min > v_max THEN
        RETURN rn_error(422, 'invalid_players', 'players: 1 <= min_players <= max_players <= 2');
    END IF;
    INSERT INTO games (name, description, min_players, max_players, ticket_cost, active)
    VALUES (v_name, v_description, v_min, v_max, v_cost, v_active)
    ON CONFLICT (name) DO NOTHING
    RETURNING * INTO g;
    IF NOT FOUND THEN
        RETURN rn_error(409, 'game_name_taken', 'a game with this name exists');
    END IF;
    RETURN rn_answer(201, jsonb_build_object('game', rn_game_json(g)));
END
$$;

CREATE FUNCTION rn_arcade_json(a arcades)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', a.id, 'name', a.name, 'location', a.location,
                              'status', a.status, 'created_at', a.created_at)
$$;

-- POST /admin/arcades {name, location?}. The hub took p_id from the arcades
-- sequence and made the key for it: the row is born with the key's hash, and
-- the key itself never reaches the database.
CREATE FUNCTION rn_admin_arcade_create(p_id bigint, p_key_hash text, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
    v_name text;
    v_location text;
BEGIN
    BEGIN
        v_name := btrim(rn_body_field(p_body, 'name', 'string'));
        v_location := coalesce(btrim(rn_body_field(p_body, 'location', 'string')), '');
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN rn_error(400, 'bad_request', SQLERRM);
    END;
    IF char_length(coalesce(v_name, '')) NOT BETWEEN 1 AND 100 THEN
        RETURN rn_error(422, 'invalid_name', 'name: 1 to 100 characters');
    END IF;
    IF char_length(v_location) > 200 THEN
        RETURN rn_error(422, 'invalid_location', 'location: at most 200 characters');
    END IF;
    INSERT INTO arcades (id, name, location, api_key_hash, status)
    VALUES (p_id, v_name, v_location, p_key_hash, 'offline')
    RETURNING * INTO a;
    RETURN rn_answer(201, jsonb_build_object('arcade', rn_arcade_json(a)))
        || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_created',
                                                                'arcade_id', a.id));
END
$$;

-- POST /admin/arcades/{id}/rotate-key: the old key stops working at commit.
CREATE FUNCTION rn_admin_arcade_rotate_key(p_id bigint, p_key_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a arcades;
BEGIN
    UPDATE arcades SET api_key_hash = p_key_hash WHERE id = p_id AND deleted_at IS NULL
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    RETURN rn_answer(200, jsonb_build_object('arcade', rn_arcade_json(a)))
        || jsonb_build_object('admin_event', jsonb_build_object('kind', 'arcade_key_rotated',
                                                                'arcade_id', a.id));
END
$$;

-- POST /admin/arcades/{id}/games {game_id, slot}
CREATE FUNCTION rn_admin_arcade_add_game(p_arcade_id bigint, p_game_id bigint, p_slot integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_constraint text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM arcades WHERE id = p_arcade_id AND deleted_at IS NULL) THEN
        RETURN rn_error(404, 'arcade_not_found', 'no such arcade');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM games WHERE id = p_game_id) THEN
        RETURN rn_error(404, 'game_not_found', 'no such game');
    END IF;
    IF p_slot IS NULL OR p_slot NOT BETWEEN 1 AND 64 THEN
        RETURN rn_error(422, 'invalid_slot', 'slot: 1 to 64');
    END IF;
    BEGIN
        INSERT INTO arcade_games (arcade_id, game_id, slot) VALUES (p_arcade_id, p_game_id, p_slot);
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'arcade_games_game_once' THEN
            RETURN rn_error(409, 'game_already_on_arcade', 'this game is already on this arcade');
        END IF;
        RETURN rn_error(409, 'slot_taken', 'this slot of the arcade is taken');
    END;
    RETURN rn_answer(201, jsonb_build_object('arcade_id', p_arcade_id, 'game_id', p_game_id,
                                             'slot', p_slot));
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
--   refund        a refund (+cost, the booking user) missing for a cancelled or
--                 voided reservation, more than one for an expired one, or one
--                 for a reservation in any other state
CREATE FUNCTION rn_audit()
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
        OR (r.status IN ('cancelled', 'voided') AND l.n <> 1)
        OR (r.status = 'expired' AND l.n > 1)
        OR (r.status NOT IN ('cancelled', 'voided', 'expired') AND l.n <> 0)
$$;
