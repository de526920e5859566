-- Regime effects as pairs: the same architecture with a regime (distilled, in21k, clip, ...) and without any (plain).
-- Pairing rule: a model's arch is its architecture name (models.name; a published name: the name part of its model id,
-- else the name up to its first '.'), lower-cased, cut at '_' and '-', without the regime words distilled, dist,
-- clip, in21k, in22k, in21ft1k, in22ft1k, in12k, original, ns, ssl, swsl, ig, adv and ens, joined by '_'
-- (deit_base_distilled_patch16_224 and deit_base_patch16_224 are both deit_base_patch16_224). Within one origin and
-- arch, the models of a regime pair with the plain models (regime_groups); each side is the mean over its models, so
-- an arch gives one pair per (regime, metric); difference = value_with - value_without. An arch of the regime without
-- plain models is listed too, unpaired (n_without 0, value_without and difference NULL).
WITH
-- population:begin (the same text in every comparison query that reads it; tests/test_results_comparisons.py)
population AS (
    SELECT
        'ours' AS origin, m.model_id AS model, m.model_id, m.name AS architecture, m.family, m.pretraining,
        m.distilled, m.self_supervised, m.semi_supervised, m.clip, m.adversarial,
        s.accuracy, s.auroc, s.aurc, s.ece15, c.cood_mean_auroc
    FROM models AS m
    LEFT JOIN selective_metrics AS s
        ON s.model_id = m.model_id AND s.kappa = 'msp' AND NOT s.temperature_scaled AND s.subset = 'all'
    LEFT JOIN (
        SELECT model_id, avg(ood_auroc) AS cood_mean_auroc FROM cood_levels WHERE kappa = 'msp' GROUP BY model_id
    ) AS c ON c.model_id = m.model_id
    WHERE m.pretrained
    UNION ALL
    SELECT
        'published', r.model_name, r.model_id,
        coalesce(nullif(regexp_extract(r.model_id, '^(timm|torchvision|open_clip|efficientnet_lite)-([^.]+)', 2), ''),
                 split_part(r.model_name, '.', 1)),
        r.family, r.pretraining, r.distilled, r.self_supervised, r.semi_supervised, r.clip, r.adversarial,
        coalesce(h.accuracy, c.id_accuracy), coalesce(h.auroc, c.id_auroc), h.aurc, h.ece15, c.cood_mean_auroc
    FROM reference_models AS r
    LEFT JOIN (
        SELECT
            model_name,
            any_value(value) FILTER (WHERE column_name = 'Accuracy') AS accuracy,
            any_value(value) FILTER (WHERE column_name = 'AUROC') AS auroc,
            any_value(value) FILTER (WHERE column_name = 'AURC') AS aurc,
            any_value(value) FILTER (WHERE column_name = 'ECE_15') AS ece15
        FROM reference_hsc_metrics
        GROUP BY model_name
    ) AS h ON h.model_name = r.model_name
    LEFT JOIN (
        SELECT model_name, avg(ood_auroc) AS cood_mean_auroc, any_value(id_accuracy) AS id_accuracy,
               any_value(id_auroc) AS id_auroc
        FROM reference_cood_levels
        WHERE kappa = 'msp'
        GROUP BY model_name
    ) AS c ON c.model_name = r.model_name
),
-- population:end
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
-- regimes:begin (the same text in every query that groups by regime; tests/test_results_comparisons.py)
regimes AS (
    SELECT * FROM (VALUES ('all', 1), ('plain', 2), ('distilled', 3), ('in21k', 4), ('clip', 5), ('semi_supervised', 6),
                          ('self_supervised', 7), ('adversarial', 8)) AS g(regime, position)
),
membership AS (
    SELECT p.*, g.regime, g.position
    FROM grouped AS p
    CROSS JOIN regimes AS g
    WHERE CASE g.regime
        WHEN 'all' THEN true
        WHEN 'plain' THEN p.pretraining = 'in1k'
            AND NOT (p.distilled OR p.self_supervised OR p.semi_supervised OR p.clip OR p.adversarial)
        WHEN 'distilled' THEN p.distilled
        WHEN 'in21k' THEN p.pretraining IN ('in21k', 'in22k', 'in12k')
        WHEN 'clip' THEN p.clip
        WHEN 'semi_supervised' THEN p.semi_supervised
        WHEN 'self_supervised' THEN p.self_supervised
        WHEN 'adversarial' THEN p.adversarial
    END
),
-- regimes:end
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
