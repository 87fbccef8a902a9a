-- ViewBait's Supabase tables and credit functions, as VIEWBAIT.md describes them: the
-- names, columns and argument names are ViewBait's; the bodies are ours, written to the
-- behaviour its callers rely on. Supabase's `auth.users` stands behind the user ids.

CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY);

CREATE TABLE public.subscription_tiers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tier_name text NOT NULL,
    name text NOT NULL,
    test_product_id text,
    live_product_id text,
    credits_per_month integer NOT NULL,
    allowed_resolutions text[] NOT NULL,
    max_variations integer NOT NULL,
    has_watermark boolean NOT NULL DEFAULT false,
    can_create_custom boolean NOT NULL DEFAULT false,
    is_active boolean NOT NULL DEFAULT true
);

CREATE TABLE public.user_subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    product_id text,
    status text NOT NULL DEFAULT 'active',
    credits_total integer NOT NULL DEFAULT 0,
    credits_remaining integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX user_subscriptions_user_id_key ON public.user_subscriptions (user_id);

CREATE TABLE public.subscription_settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE public.thumbnails (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    project_id uuid,
    title text NOT NULL,
    image_url text NOT NULL,
    thumbnail_400w_url text,
    thumbnail_800w_url text,
    style text,
    palette text,
    emotion text,
    aspect_ratio text,
    resolution text,
    has_watermark boolean NOT NULL DEFAULT false,
    liked boolean NOT NULL DEFAULT false,
    is_public boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.credit_transactions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    amount integer NOT NULL,
    type text NOT NULL,
    description text,
    thumbnail_id uuid REFERENCES public.thumbnails (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The keys the functions have seen, recorded in the same transaction as the movement.
CREATE TABLE public.credit_idempotency_keys (
    idempotency_key text PRIMARY KEY,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION public.decrement_credits_atomic(
    p_user_id uuid,
    p_cost integer,
    p_idempotency_key text,
    p_thumbnail_id uuid DEFAULT NULL,
    p_description text DEFAULT NULL,
    p_transaction_type text DEFAULT 'generation'
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    v_remaining integer;
BEGIN
    -- A key seen before (or being used by a concurrent call, which this waits for).
    INSERT INTO credit_idempotency_keys (idempotency_key, user_id)
    VALUES (p_idempotency_key, p_user_id)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT credits_remaining INTO v_remaining
        FROM user_subscriptions WHERE user_id = p_user_id;
        RETURN json_build_object('success', true, 'duplicate', true,
                                 'remaining', coalesce(v_remaining, 0), 'reason', NULL);
    END IF;
    UPDATE user_subscriptions
    SET credits_remaining = credits_remaining - p_cost, updated_at = now()
    WHERE user_id = p_user_id AND credits_remaining >= p_cost
    RETURNING credits_remaining INTO v_remaining;
    IF NOT FOUND THEN
        -- Nothing was charged: the key stays unused.
        DELETE FROM credit_idempotency_keys WHERE idempotency_key = p_idempotency_key;
        SELECT credits_remaining INTO v_remaining
        FROM user_subscriptions WHERE user_id = p_user_id;
        RETURN json_build_object('success', false, 'duplicate', false,
                                 'remaining', coalesce(v_remaining, 0),
                                 'reason', 'INSUFFICIENT');
    END IF;
    INSERT INTO credit_transactions (user_id, amount, type, description, thumbnail_id)
    VALUES (p_user_id, -p_cost, p_transaction_type, p_description, p_thumbnail_id);
    RETURN json_build_object('success', true, 'duplicate', false,
                             'remaining', v_remaining, 'reason', NULL);
END
$$;

CREATE FUNCTION public.increment_credits_atomic(
    p_user_id uuid,
    p_amount integer,
    p_idempotency_key text,
    p_description text DEFAULT NULL,
    p_transaction_type text DEFAULT 'refund'
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    v_remaining integer;
BEGIN
    INSERT INTO credit_idempotency_keys (idempotency_key, user_id)
    VALUES (p_idempotency_key, p_user_id)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT credits_remaining INTO v_remaining
        FROM user_subscriptions WHERE user_id = p_user_id;
        RETURN json_build_object('success', true, 'duplicate', true,
                                 'remaining', coalesce(v_remaining, 0), 'reason', NULL);
    END IF;
    UPDATE user_subscriptions
    SET credits_remaining = credits_remaining + p_amount, updated_at = now()
    WHERE user_id = p_user_id
    RETURNING credits_remaining INTO v_remaining;
    IF NOT FOUND THEN
        DELETE FROM credit_idempotency_keys WHERE idempotency_key = p_idempotency_key;
        RETURN json_build_object('success', false, 'duplicate', false, 'remaining', 0,
                                 'reason', 'NO_SUBSCRIPTION');
    END IF;
    INSERT INTO credit_transactions (user_id, amount, type, description)
    VALUES (p_user_id, p_amount, p_transaction_type, p_description);
    RETURN json_build_object('success', true, 'duplicate', false,
                             'remaining', v_remaining, 'reason', NULL);
END
$$;

INSERT INTO public.subscription_tiers
    (tier_name, name, test_product_id, live_product_id, credits_per_month,
     allowed_resolutions, max_variations, has_watermark, can_create_custom)
VALUES
    ('free', 'Free', NULL, NULL, 10, '{1K}', 1, true, false),
    ('starter', 'Starter', 'prod_test_starter', 'prod_live_starter', 100, '{1K,2K}', 2,
     false, false),
    ('advanced', 'Advanced', 'prod_test_advanced', 'prod_live_advanced', 300,
     '{1K,2K,4K}', 3, false, true),
    ('pro', 'Pro', 'prod_test_pro', 'prod_live_pro', 700, '{1K,2K,4K}', 4, false, true);

INSERT INTO public.subscription_settings (key, value) VALUES
    ('resolution_credits_1k', '1'),
    ('resolution_credits_2k', '2'),
    ('resolution_credits_4k', '4'),
    ('edit_credit_cost', '2');
