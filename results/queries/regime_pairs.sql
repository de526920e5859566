-- Regime effects as pairs: the same architecture with a regime (distilled, in21k, clip, ...) and without any (plain).
-- Pairing rule: a model's arch is its architecture name (models.name; a published name: the name part of its model id,
-- else the name up to its first '.'), lower-cased, cut at '_' and '-', without the regime words distilled, dist,
-- clip, in21k, in22k, in21ft1k, in22ft1k, in12k, original, ns, ssl, swsl, ig, adv and ens, joined by '_'
-- (deit_base_distilled_patch16_224 and deit_base_patch16_224 are both deit_base_patch16_224). Within one origin and
-- arch, the models of a regime pair with the plain models (regime_groups); each side is the mean over its models, so
-- an arch gives one pair per (regime, metric); difference = value_with - value_without. An arch of the regime without
-- plain models is listed too, unpaired (n_without 0, value_without and difference NULL).
WITH
population AS (SELECT * FROM model_population),  -- the shared view (results/queries/views/)
grouped AS (
    UNPIVOT (
        SELECT
            origin, model, pretraining, distilled, self_supervised, semi_supervised, clip, adversarial,
            array_to_string(list_filter(
                string_split_regex(lower(architecture), '[_-]'),
                lambda word: NOT regexp_full_match(
                    word, 'distilled|dist|clip|in21k|in22k|in21ft1k|in22ft1k|in12k|original|ns|ssl|swsl|ig|adv|ens')
            ), '_') AS arch,
            accuracy, auroc, aurc, ece15, cood_mean_auroc
        FROM population
    )
    ON accuracy, auroc, aurc, ece15, cood_mean_auroc INTO NAME metric VALUE value
),
membership AS (  -- regimes: the shared view regime_members (results/queries/views/)
    SELECT p.*, g.regime, g.position
    FROM grouped AS p
    JOIN regime_members AS g ON g.origin = p.origin AND g.model = p.model
),
sides AS (
    SELECT
        origin, regime, arch, metric,
        count(*) AS models,
        avg(value) AS value,
        string_agg(model, ', ' ORDER BY model) AS model_list,
        min(position) AS position
    FROM membership
    WHERE regime <> 'all'
    GROUP BY origin, regime, arch, metric
)
SELECT
    w.origin, w.regime, w.arch, w.metric,
    w.models AS n_with, coalesce(o.models, 0) AS n_without,
    w.value AS value_with, o.value AS value_without,
    w.value - o.value AS difference,
    w.model_list AS models_with, o.model_list AS models_without
FROM sides AS w
LEFT JOIN sides AS o ON o.origin = w.origin AND o.arch = w.arch AND o.metric = w.metric AND o.regime = 'plain'
WHERE w.regime <> 'plain'
ORDER BY w.origin, w.position, w.metric, difference IS NULL, w.arch
