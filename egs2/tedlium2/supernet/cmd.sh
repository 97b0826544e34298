# Job runners. cmd_backend=local runs jobs on this machine (utils/run.pl); slurm submits
# them with sbatch (utils/slurm.pl, options in conf/slurm.conf). ESPnet's launcher picks
# the mechanism from the runner's basename (run.pl / slurm.pl).
cmd_backend=${cmd_backend:-local}
case "$cmd_backend" in
  local)
    export train_cmd="utils/run.pl" cuda_cmd="utils/run.pl" decode_cmd="utils/run.pl" ;;
  slurm)
    export train_cmd="utils/slurm.pl --config conf/slurm.conf"
    export cuda_cmd="utils/slurm.pl --config conf/slurm.conf"
    export decode_cmd="utils/slurm.pl --config conf/slurm.conf" ;;
  *) echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2; return 1 ;;
esac
