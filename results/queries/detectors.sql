-- Detectors against MSP per (κ, model): mean and hardest-level OOD AUROC, paired gains, selective AUROC and AURC.
-- One row per (origin, κ other than msp, model) over the levels where both have an OOD AUROC (the view
-- detector_pairs): the κ's and MSP's mean over those levels and values at the hardest of them, the gains (κ − MSP),
-- and the κ's and MSP's selective AUROC and AURC (no temperature scaling, every ID sample; NULL without that row).
WITH per_model AS (
    SELECT
        model_id,
        kappa,
        count(*) AS levels,
        any_value(hardest_level) AS hardest_level,
        avg(ood_auroc) AS mean_auroc,
        avg(msp_ood_auroc) AS msp_mean_auroc,
        avg(gain) AS mean_gain,
        any_value(ood_auroc) FILTER (WHERE level = hardest_level) AS hardest_auroc,
        any_value(msp_ood_auroc) FILTER (WHERE level = hardest_level) AS msp_hardest_auroc,
        any_value(gain) FILTER (WHERE level = hardest_level) AS hardest_gain
    FROM detector_pairs
    GROUP BY model_id, kappa
)
SELECT
    'ours' AS origin,
    p.kappa,
    p.model_id,
    p.levels,
    p.hardest_level,
    p.mean_auroc,
    p.msp_mean_auroc,
    p.mean_gain,
    p.hardest_auroc,
    p.msp_hardest_auroc,
    p.hardest_gain,
    s.auroc AS selective_auroc,
    s.aurc AS selective_aurc,
    b.auroc AS msp_selective_auroc,
    b.aurc AS msp_selective_aurc
FROM per_model AS p
LEFT JOIN selective_metrics AS s
    ON s.model_id = p.model_id AND s.kappa = p.kappa AND NOT s.temperature_scaled AND s.subset = 'all'
LEFT JOIN selective_metrics AS b
    ON b.model_id = p.model_id AND b.kappa = 'msp' AND NOT b.temperature_scaled AND b.subset = 'all'
ORDER BY p.kappa, p.model_id
