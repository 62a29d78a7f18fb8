"""vgg-lightning's launcher for hydra/launcher=slurm. Hydra takes launchers only from the `hydra_plugins`
namespace, so the class lives here; what it reports is vgg_lightning/app/slurm_jobs.py's."""
