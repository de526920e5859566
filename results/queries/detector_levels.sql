-- Detectors against MSP per severity level: quantiles over models of each κ's paired OOD AUROC gain over MSP.
-- One row per (origin, κ other than msp, level) of the view detector_pairs: the models paired at that level, the
-- quartiles and mean of their gains (κ − MSP at the same level), the fraction with a gain > 0, and the median
-- OOD AUROC of the κ and of MSP over those models.
SELECT
    'ours' AS origin,
    kappa,
    level,
    count(*) AS models,
    quantile_cont(gain, 0.25) AS q25_auroc_gain,
    quantile_cont(gain, 0.5) AS median_auroc_gain,
    quantile_cont(gain, 0.75) AS q75_auroc_gain,
    avg(gain) AS mean_auroc_gain,
    avg(CASE WHEN gain > 0 THEN 1.0 ELSE 0.0 END) AS beats_msp,
    quantile_cont(ood_auroc, 0.5) AS median_ood_auroc,
    quantile_cont(msp_ood_auroc, 0.5) AS median_msp_ood_auroc
FROM detector_pairs
GROUP BY kappa, level
ORDER BY kappa, level
