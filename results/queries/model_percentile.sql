-- Each model's rank and percentile among all models of its origin, per metric (pick one: WHERE model = '...').
-- percentile = 100 x the share of the origin's other models with a strictly worse value (higher is better for
-- accuracy, auroc and cood_mean_auroc, lower for aurc and ece15); rank 1 = best, tied models share the better rank.
WITH
population AS (SELECT * FROM model_population),  -- the shared view (results/queries/views/)
long AS (
    UNPIVOT (
        SELECT origin, model, model_id, family, pretraining, distilled, self_supervised, semi_supervised, clip,
               adversarial, accuracy, auroc, aurc, ece15, cood_mean_auroc
        FROM population
    )
    ON accuracy, auroc, aurc, ece15, cood_mean_auroc INTO NAME metric VALUE value
),
scored AS (
    SELECT *, CASE WHEN metric IN ('aurc', 'ece15') THEN -value ELSE value END AS goodness
    FROM long
)
SELECT
    origin, model, model_id, family, pretraining, distilled, self_supervised, semi_supervised, clip, adversarial,
    metric, value,
    rank() OVER (PARTITION BY origin, metric ORDER BY goodness DESC) AS rank,
    count(*) OVER (PARTITION BY origin, metric) AS n,
    100 * percent_rank() OVER (PARTITION BY origin, metric ORDER BY goodness) AS percentile
FROM scored
ORDER BY origin, metric, rank, model
