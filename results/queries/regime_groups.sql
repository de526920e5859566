-- Metric distributions per training regime (quantiles), ours and published: all, plain, distilled, in21k, clip, ...
-- One row per (origin, regime, metric) over the models of the regime (a model counts in every regime it has; 'all' is
-- every pretrained model, 'plain' those pre-trained on ImageNet-1k only with no regime flag). Metrics: accuracy, auroc,
-- aurc, ece15 (MSP, no TS) and cood_mean_auroc; quantiles interpolate linearly (quantile_cont).
WITH
population AS (SELECT * FROM model_population),  -- the shared view (results/queries/views/)
grouped AS (
    UNPIVOT (
        SELECT origin, model, pretraining, distilled, self_supervised, semi_supervised, clip, adversarial,
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
summary AS (
    SELECT
        origin, regime, metric,
        count(*) AS models,
        avg(value) AS mean,
        min(value) AS min,
        quantile_cont(value, 0.25) AS q25,
        quantile_cont(value, 0.5) AS median,
        quantile_cont(value, 0.75) AS q75,
        max(value) AS max,
        min(position) AS position
    FROM membership
    GROUP BY origin, regime, metric
)
SELECT * EXCLUDE (position)
FROM summary
ORDER BY origin, metric, position
