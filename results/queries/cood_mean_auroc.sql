-- C-OOD leaderboard: OOD AUROC averaged over the severity levels, with the easiest and hardest level.
SELECT
    rank() OVER (ORDER BY avg(ood_auroc) DESC) AS rank,
    model_id,
    kappa,
    count(*) AS levels,
    avg(ood_auroc) AS mean_ood_auroc,
    arg_min(ood_auroc, level) AS auroc_easiest,
    arg_max(ood_auroc, level) AS auroc_hardest,
    arg_min(ood_auroc, level) - arg_max(ood_auroc, level) AS degradation,
    any_value(id_accuracy) AS id_accuracy
FROM cood_levels
GROUP BY model_id, kappa
ORDER BY rank, model_id, kappa
