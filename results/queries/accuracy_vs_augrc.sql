-- Accuracy against AUGRC and AUROC for every model and kappa (no temperature scaling), for trend plots.
SELECT
    model_id,
    kappa,
    accuracy,
    augrc,
    auroc,
    aurc
FROM selective_metrics
WHERE NOT temperature_scaled AND subset = 'all'
ORDER BY kappa, accuracy DESC, model_id
