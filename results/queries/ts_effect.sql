-- Temperature scaling's effect per model and metric (MSP): the value before and after TS, the change, and the ranks.
-- Ours: after = the TS row (subset ts_eval), before = the same subset without TS (before_subset 'ts_eval'; databases
-- without that row fall back to subset 'all'). Published (HSC table): X_TS against X, which the paper computed on
-- all images (before_subset 'all'). Ranks (1 = best; higher is better for accuracy, auroc and sac99, lower for aurc,
-- eaurc and ece15) among the models of the origin with both values; rank_change = rank_after - rank_before.
WITH
before_rows AS (
    SELECT *
    FROM selective_metrics
    WHERE kappa = 'msp' AND NOT temperature_scaled AND subset IN ('ts_eval', 'all')
    QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY subset = 'ts_eval' DESC) = 1
),
ours_wide AS (
    SELECT
        b.model_id, b.subset AS before_subset,
        b.accuracy AS b_accuracy, t.accuracy AS t_accuracy, b.auroc AS b_auroc, t.auroc AS t_auroc,
        b.aurc AS b_aurc, t.aurc AS t_aurc, b.eaurc AS b_eaurc, t.eaurc AS t_eaurc,
        b.ece15 AS b_ece15, t.ece15 AS t_ece15, b.sac99 AS b_sac99, t.sac99 AS t_sac99
    FROM before_rows AS b
    JOIN selective_metrics AS t
        ON t.model_id = b.model_id AND t.kappa = 'msp' AND t.temperature_scaled AND t.subset = 'ts_eval'
    JOIN models AS m ON m.model_id = b.model_id
    WHERE m.pretrained
),
ours AS (
    SELECT *
    FROM ours_wide
    UNPIVOT INCLUDE NULLS ((before, after) FOR metric IN (
        (b_accuracy, t_accuracy) AS accuracy, (b_auroc, t_auroc) AS auroc, (b_aurc, t_aurc) AS aurc,
        (b_eaurc, t_eaurc) AS eaurc, (b_ece15, t_ece15) AS ece15, (b_sac99, t_sac99) AS sac99
    ))
),
pairs AS (
    SELECT 'ours' AS origin, model_id AS model, model_id, before_subset, metric, before, after
    FROM ours
    UNION ALL
    SELECT
        'published', h.model_name, any_value(r.model_id), 'all',
        CASE h.metric
            WHEN 'Accuracy' THEN 'accuracy' WHEN 'AUROC' THEN 'auroc' WHEN 'AURC' THEN 'aurc'
            WHEN 'EAURC' THEN 'eaurc' WHEN 'ECE_15' THEN 'ece15' ELSE 'sac99'
        END,
        any_value(h.value) FILTER (WHERE NOT h.temperature_scaled),
        any_value(h.value) FILTER (WHERE h.temperature_scaled)
    FROM reference_hsc_metrics AS h
    LEFT JOIN reference_models AS r ON r.model_name = h.model_name
    WHERE h.metric IN ('Accuracy', 'AUROC', 'AURC', 'EAURC', 'ECE_15', 'Coverage_for_Accuracy_99_nonstrict')
    GROUP BY h.model_name, h.metric
),
scored AS (
    SELECT
        *,
        CASE WHEN metric IN ('aurc', 'eaurc', 'ece15') THEN -1 ELSE 1 END AS sign
    FROM pairs
    WHERE before IS NOT NULL AND after IS NOT NULL
)
SELECT
    origin, model, model_id, metric, before_subset, before, after,
    after - before AS difference,
    rank() OVER (PARTITION BY origin, metric ORDER BY sign * before DESC) AS rank_before,
    rank() OVER (PARTITION BY origin, metric ORDER BY sign * after DESC) AS rank_after,
    rank_after - rank_before AS rank_change,
    count(*) OVER (PARTITION BY origin, metric) AS n
FROM scored
ORDER BY origin, metric, rank_before, model
