#!/usr/bin/env bash
# Supernet ASR recipe template: train ONE supernet, decode and score EVERY named size.
# Stage numbers follow ESPnet's asr.sh. Kaldi-free: needs only the pip packages.
#
#   1  data prep (local/data.sh)            3  format + check audio   4  filter by duration
#   5  token list (BPE model or chars)      6  LM collect stats       7  LM training
#   8  LM perplexity (dev and test text)    10 collect stats          11 supernet training
#   12 decoding, every size x test set      13 scoring -> RESULTS.md (WER/CER, params, FLOPs)
#   14 export every size (standalone ESPnet model, pack zip, ONNX, int8), measure CPU latency,
#      deployment table in RESULTS.md and a Pareto plot (WER vs params / latency)
set -euo pipefail
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}) $*"; }
# split_scp <scp> <n> <outdir>: contiguous chunks outdir/keys.{1..n}.scp
split_scp() {
  mkdir -p "$3"; rm -f "$3"/keys.*.scp
  awk -v n="$2" -v d="$3" -v total="$(wc -l < "$1")" \
    '{ print > (d "/keys." int((NR - 1) * n / total) + 1 ".scp") }' "$1"
}

stage=1; stop_stage=14
nj=2                     # parallel jobs: collect stats
inference_nj=2           # parallel jobs: decoding (per size and test set)
job_threads=1            # CPU threads of each parallel stats / decoding job (2 jobs x 2
                         # threads on 2 cores run several times slower than 2 x 1)
ngpu=0                   # GPUs for training
num_nodes=1
python=python3
train_set=""; valid_set=""; test_sets=""
local_data_opts=""
min_duration=0.1; max_duration=20
token_type=bpe           # bpe or char
nbpe=300; bpemode=unigram
asr_config=""; inference_config=""
asr_tag=""; asr_args=""
asr_stats_dir=""         # default: $expdir/asr_stats_<token tag>
inference_asr_model=valid.loss.ave.pth
use_lm=true              # train a token LM (stages 6-8) and fuse it in decoding (stage 12)
lm_config=""; lm_tag=""; lm_args=""
lm_train_text=""         # default: training transcripts + data/local/other_text/text
inference_lm=valid.loss.best.pth
bn_calibration_batches=20  # re-estimate each size's BatchNorm statistics (0: off)
inference_args=""
subnets=""               # sizes to decode; default: every named subnet of the model
latency_threads=2        # threads for the latency measurements of stage 14
streaming_chunk_ms=160   # stage 14, causal TODM models: waveform chunk of the streaming report
export_args=""           # extra espnet_supernet.bin.export options (stage 14)
dumpdir=dump; expdir=exp
results_dir=results      # committed run records (stages 13-14): what the docs render

help_message="Usage: $0 --train_set <set> --valid_set <set> --test_sets '<sets>' --asr_config <yaml> [options]
Options (default):
  --stage ($stage) --stop_stage ($stop_stage)  run stages in [stage, stop_stage]
  --nj ($nj) --inference_nj ($inference_nj) --ngpu ($ngpu) --num_nodes ($num_nodes)
  --job_threads ($job_threads)  CPU threads per parallel job (stages 10 and 12)
  --local_data_opts  passed to local/data.sh
  --min_duration ($min_duration) --max_duration ($max_duration)  seconds, train/valid only
  --token_type ($token_type)  bpe (sentencepiece) or char
  --nbpe ($nbpe) --bpemode ($bpemode)  for --token_type bpe
  --asr_config  training config  --asr_args  extra training arguments  --asr_tag  exp name
  --asr_stats_dir  stage 10 output (default: \$expdir/asr_stats_<token tag>); give each
      frontend setting (e.g. n_mels) its own
  --inference_config  decoding config  --inference_args  extra decoding arguments
  --inference_asr_model ($inference_asr_model)
  --use_lm ($use_lm)  train a language model on the token units (stages 6-8) and use it
      in decoding; needs --lm_config and a beam-search --inference_config (lm_weight)
  --lm_config  LM training config  --lm_args  extra LM training arguments  --lm_tag  exp name
  --lm_train_text  LM training text(s), 'key text' lines (default: the training transcripts
      and data/local/other_text/text, which local/data.sh writes when it finds LM text)
  --inference_lm ($inference_lm)  LM checkpoint used in decoding
  --bn_calibration_batches ($bn_calibration_batches)  training batches per size for
      BatchNorm re-estimation before decoding (0: use the statistics from training)
  --subnets  space-separated sizes to decode and export (default: all named subnets)
  --latency_threads ($latency_threads)  CPU threads for stage 14's latency measurements
  --streaming_chunk_ms ($streaming_chunk_ms)  waveform chunk of stage 14's streaming report
      (causal TODM models: WER, RTF and first-token latency per size, 1 thread)
  --results_dir ($results_dir)  run records of stages 13-14 (training budget and time, scores,
      deployment rows as JSON): commit them; tools/docs.sh renders the docs from them
  --export_args  extra export options of stage 14, e.g. '--stock_encoder false' (whole-block
      sizes as pruned_conformer: faster on CPU, needs espnet_supernet to load)"
. utils/parse_options.sh
[ -f path.sh ] && . ./path.sh
[ -f cmd.sh ] && . ./cmd.sh
: "${train_cmd:=utils/run.pl}" "${cuda_cmd:=utils/run.pl}" "${decode_cmd:=utils/run.pl}"
for v in train_set valid_set test_sets asr_config; do
  [ -n "${!v}" ] || { log "Error: --$v is required"; echo "$help_message"; exit 2; }
done

case $token_type in
  bpe) token_listdir=data/token_list/bpe_${bpemode}${nbpe}; token_tag=bpe${nbpe} ;;
  char) token_listdir=data/token_list/char; token_tag=char ;;
  *) log "Error: --token_type must be bpe or char, got '$token_type'"; exit 2 ;;
esac
bpemodel=${token_listdir}/bpe.model
token_list=${token_listdir}/tokens.txt
[ -n "$asr_tag" ] || asr_tag=$(basename "${asr_config%.*}")
asr_exp=${expdir}/asr_${asr_tag}
[ -n "$asr_stats_dir" ] || asr_stats_dir=${expdir}/asr_stats_${token_tag}
data_opts=(--use_preprocessor true --token_type $token_type --token_list "$token_list"
           --cleaner none --g2p none)
[ $token_type = bpe ] && data_opts+=(--bpemodel "$bpemodel")

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
  local/data.sh ${local_data_opts}
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: format data, check every audio file -> ${dumpdir}/raw"
  for dset in $(echo $train_set $valid_set $test_sets | tr ' ' '\n' | awk '!seen[$0]++'); do
    $python -m espnet_supernet.bin.format_data data/$dset $dumpdir/raw/org/$dset \
      --nj $nj --min_duration 0 --max_duration 1e9
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: filter train/valid by duration [$min_duration, $max_duration] s"
  for dset in $train_set $valid_set; do
    $python -m espnet_supernet.bin.format_data $dumpdir/raw/org/$dset $dumpdir/raw/$dset \
      --nj $nj --min_duration $min_duration --max_duration $max_duration
  done
  for dset in $test_sets; do
    case " $train_set $valid_set " in *" $dset "*) continue ;; esac  # already filtered
    rm -rf $dumpdir/raw/$dset; cp -r $dumpdir/raw/org/$dset $dumpdir/raw/$dset
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  if [ $token_type = bpe ]; then
    log "Stage 5: BPE ($bpemode, $nbpe units) and token list -> $token_listdir"
    $python -m espnet_supernet.bin.train_bpe --text $dumpdir/raw/$train_set/text \
      --model_prefix ${token_listdir}/bpe --vocab_size $nbpe --model_type $bpemode \
      --token_list "$token_list"
  else
    log "Stage 5: character token list -> $token_list"
    mkdir -p $token_listdir
    $python -m espnet_supernet.bin.espnet_tool espnet2.bin.tokenize_text --token_type char \
      --field 2- --input $dumpdir/raw/$train_set/text --output "$token_list" --write_vocabulary true \
      --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
  fi
fi

if [ "$use_lm" = true ]; then
  [ -n "$lm_config" ] || { log "Error: --use_lm true needs --lm_config"; exit 2; }
  [ -n "$lm_tag" ] || lm_tag=$(basename "${lm_config%.*}")
  lm_exp=${expdir}/lm_${lm_tag}; lm_stats_dir=${expdir}/lm_stats_${token_tag}
  lm_dir=$dumpdir/lm_${token_tag}
fi
if [ "$use_lm" = true ] && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  mkdir -p $lm_dir
  [ -n "$lm_train_text" ] || lm_train_text="$dumpdir/raw/$train_set/text $(ls data/local/other_text/text 2>/dev/null || true)"
  log "Stage 6: LM text ($lm_train_text) and shapes -> $lm_stats_dir"
  cat $lm_train_text | awk 'NF > 1' > $lm_dir/train.txt  # drop empty transcripts
  awk 'NF > 1' $dumpdir/raw/$valid_set/text > $lm_dir/dev.txt
  logdir=$lm_stats_dir/logdir; mkdir -p $logdir
  cut -d' ' -f1 $lm_dir/train.txt > $logdir/train.keys; cut -d' ' -f1 $lm_dir/dev.txt > $logdir/dev.keys
  ${train_cmd} $logdir/stats.log \
    $python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_train --collect_stats true \
      "${data_opts[@]}" --non_linguistic_symbols none --config "$lm_config" \
      --train_data_path_and_name_and_type $lm_dir/train.txt,text,text \
      --valid_data_path_and_name_and_type $lm_dir/dev.txt,text,text \
      --train_shape_file $logdir/train.keys --valid_shape_file $logdir/dev.keys \
      --output_dir $lm_stats_dir ${lm_args}
  for s in train valid; do
    awk -v N="$(wc -l < $token_list)" '{ print $0 "," N }' \
      $lm_stats_dir/$s/text_shape > $lm_stats_dir/$s/text_shape.$token_type
  done
fi

if [ "$use_lm" = true ] && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: LM training -> $lm_exp (log: $lm_exp/train.log; resumes if interrupted)"
  mkdir -p $lm_exp
  $python -m espnet2.bin.launch --cmd "${cuda_cmd} --name $lm_exp/train.log" \
    --log $lm_exp/train.log --ngpu $ngpu --num_nodes $num_nodes \
    --init_file_prefix $lm_exp/.dist_init_ --multiprocessing_distributed true -- \
    $python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_train "${data_opts[@]}" \
      --non_linguistic_symbols none --config "$lm_config" \
      --train_data_path_and_name_and_type $lm_dir/train.txt,text,text \
      --valid_data_path_and_name_and_type $lm_dir/dev.txt,text,text \
      --train_shape_file $lm_stats_dir/train/text_shape.$token_type \
      --valid_shape_file $lm_stats_dir/valid/text_shape.$token_type \
      --resume true --fold_length 150 --output_dir $lm_exp ${lm_args}
fi

if [ "$use_lm" = true ] && [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: LM perplexity on $test_sets -> $lm_exp/perplexity_test/*/ppl"
  for dset in $test_sets; do
    $python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_calc_perplexity --ngpu 0 \
      --data_path_and_name_and_type $dumpdir/raw/$dset/text,text,text \
      --train_config $lm_exp/config.yaml --model_file $lm_exp/$inference_lm \
      --output_dir $lm_exp/perplexity_test/$dset --log_level WARNING
    log "  $dset: perplexity $(cat $lm_exp/perplexity_test/$dset/ppl)"
  done
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  log "Stage 10: collect shapes and feature statistics ($nj jobs) -> $asr_stats_dir"
  logdir=$asr_stats_dir/logdir; mkdir -p $logdir
  n_train=$(wc -l < $dumpdir/raw/$train_set/wav.scp); n_valid=$(wc -l < $dumpdir/raw/$valid_set/wav.scp)
  _nj=$(( nj < n_train ? nj : n_train )); _nj=$(( _nj < n_valid ? _nj : n_valid ))
  split_scp $dumpdir/raw/$train_set/wav.scp $_nj $logdir/train
  split_scp $dumpdir/raw/$valid_set/wav.scp $_nj $logdir/valid
  ${train_cmd} JOB=1:$_nj $logdir/stats.JOB.log \
    OMP_NUM_THREADS=$job_threads $python -m espnet_supernet.bin.asr_train --collect_stats true "${data_opts[@]}" \
      --config "$asr_config" --frontend_conf fs=16k \
      --train_data_path_and_name_and_type $dumpdir/raw/$train_set/wav.scp,speech,sound \
      --train_data_path_and_name_and_type $dumpdir/raw/$train_set/text,text,text \
      --valid_data_path_and_name_and_type $dumpdir/raw/$valid_set/wav.scp,speech,sound \
      --valid_data_path_and_name_and_type $dumpdir/raw/$valid_set/text,text,text \
      --train_shape_file $logdir/train/keys.JOB.scp --valid_shape_file $logdir/valid/keys.JOB.scp \
      --output_dir $logdir/stats.JOB ${asr_args}
  $python -m espnet2.bin.aggregate_stats_dirs --output_dir $asr_stats_dir \
    $(for n in $(seq $_nj); do echo --input_dir $logdir/stats.$n; done)
  for s in train valid; do
    awk -v N="$(wc -l < $token_list)" '{ print $0 "," N }' \
      $asr_stats_dir/$s/text_shape > $asr_stats_dir/$s/text_shape.$token_type
  done
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  log "Stage 11: supernet training -> $asr_exp (log: $asr_exp/train.log; resumes if interrupted)"
  mkdir -p $asr_exp
  $python -m espnet2.bin.launch --cmd "${cuda_cmd} --name $asr_exp/train.log" \
    --log $asr_exp/train.log --ngpu $ngpu --num_nodes $num_nodes \
    --init_file_prefix $asr_exp/.dist_init_ --multiprocessing_distributed true -- \
    $python -m espnet_supernet.bin.asr_train "${data_opts[@]}" \
      --config "$asr_config" --frontend_conf fs=16k \
      --normalize global_mvn --normalize_conf stats_file=$asr_stats_dir/train/feats_stats.npz \
      --train_data_path_and_name_and_type $dumpdir/raw/$train_set/wav.scp,speech,sound \
      --train_data_path_and_name_and_type $dumpdir/raw/$train_set/text,text,text \
      --valid_data_path_and_name_and_type $dumpdir/raw/$valid_set/wav.scp,speech,sound \
      --valid_data_path_and_name_and_type $dumpdir/raw/$valid_set/text,text,text \
      --train_shape_file $asr_stats_dir/train/speech_shape \
      --train_shape_file $asr_stats_dir/train/text_shape.$token_type \
      --valid_shape_file $asr_stats_dir/valid/speech_shape \
      --valid_shape_file $asr_stats_dir/valid/text_shape.$token_type \
      --resume true --fold_length 80000 --fold_length 150 \
      --output_dir $asr_exp ${asr_args}
fi

model_file=$asr_exp/$inference_asr_model
[ "$bn_calibration_batches" -gt 0 ] && model_file=${model_file%.pth}.bncal.pth
if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  if [ "$bn_calibration_batches" -gt 0 ]; then
    log "Stage 12: per-size BatchNorm statistics on $bn_calibration_batches batches -> $model_file"
    $python -m espnet_supernet.bin.calibrate_batch_norm \
      --asr_train_config $asr_exp/config.yaml --asr_model_file $asr_exp/$inference_asr_model \
      --data_path_and_name_and_type $dumpdir/raw/$train_set/wav.scp,speech,sound \
      --num_batches $bn_calibration_batches --output $model_file
  fi
  log "Stage 12: per-subnet cost report and decoding of every size"
  $python -m espnet_supernet.bin.subnet_report --asr_train_config $asr_exp/config.yaml \
    --asr_model_file $model_file --output $asr_exp/subnets.json
  [ -n "$subnets" ] || subnets=$($python -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))))" $asr_exp/subnets.json)
  inf_tag=$(basename "${inference_config:-default}" .yaml)
  lm_opts=()
  [ "$use_lm" = true ] && lm_opts=(--lm_train_config $lm_exp/config.yaml --lm_file $lm_exp/$inference_lm)
  # one job per split decodes every size in turn (Python, ESPnet and the LM load once);
  # size k's hypotheses: $asr_exp/${inf_tag}_size<k>/<set>/text, as ESPnet lays them out
  for dset in $test_sets; do
    logdir=$asr_exp/${inf_tag}_sizes/$dset/logdir; mkdir -p $logdir
    n=$(wc -l < $dumpdir/raw/$dset/wav.scp); _nj=$(( inference_nj < n ? inference_nj : n ))
    split_scp $dumpdir/raw/$dset/wav.scp $_nj $logdir
    log "  decoding sizes $subnets on $dset ($n utts, $_nj jobs) -> $asr_exp/${inf_tag}_size*/$dset (logs: $logdir)"
    ${decode_cmd} JOB=1:$_nj $logdir/asr_inference.JOB.log \
      OMP_NUM_THREADS=$job_threads $python -m espnet_supernet.bin.asr_inference --subnet $subnets --ngpu 0 --batch_size 1 \
        --data_path_and_name_and_type $dumpdir/raw/$dset/wav.scp,speech,sound \
        --key_file $logdir/keys.JOB.scp \
        --asr_train_config $asr_exp/config.yaml --asr_model_file $model_file \
        "${lm_opts[@]}" --output_dir "$asr_exp/${inf_tag}_size{subnet}/$dset/logdir/output.JOB" \
        ${inference_config:+--config $inference_config} ${inference_args}
    for size in $subnets; do
      dir=$asr_exp/${inf_tag}_size${size}/$dset
      for n in $(seq $_nj); do cat $dir/logdir/output.$n/1best_recog/text; done \
        | LC_ALL=C sort > $dir/text
    done
  done
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  log "Stage 13: scoring every size -> $asr_exp/RESULTS.md; all experiments -> ./RESULTS.md"
  inf_tag=$(basename "${inference_config:-default}" .yaml)
  $python - "$asr_exp" "$inf_tag" "$use_lm" "$dumpdir" $test_sets > $asr_exp/score_summary.jsonl <<'PY'
import json, os, sys
exp, tag, lm, dump, sets = sys.argv[1], sys.argv[2], sys.argv[3] == "true", sys.argv[4], sys.argv[5:]
for size, row in json.load(open(os.path.join(exp, "subnets.json"))).items():
    for dset in sets:
        hyp = os.path.join(exp, f"{tag}_size{size}", dset, "text")
        if os.path.exists(hyp):
            print(json.dumps(dict(size=size, test_set=dset, ref=f"{dump}/raw/{dset}/text",
                hyp=hyp, encoder_params=row["encoder_params"],
                total_params=row["total_params"],
                encoder_gflops_per_sec=row["encoder_gflops_per_sec"], decoding=tag, lm=lm)))
PY
  $python -m espnet_supernet.bin.score --summary $asr_exp/score_summary.jsonl \
    --results_md $asr_exp/RESULTS.md
  # ./RESULTS.md: every scored experiment of this recipe, compared size by size (those
  # whose exp dirs are gone are kept as they were written; delete a section to drop it)
  $python -m espnet_supernet.bin.score --results_md RESULTS.md --keep_missing \
    $(for f in ${expdir}/*/score_summary.jsonl; do echo --summary $f; done) > /dev/null
  log "Stage 13: run record (training budget and cost, scores) -> $results_dir/$(basename $asr_exp)"
  parts=scores; [ -f $asr_exp/checkpoint.pth ] && parts="training scores"
  $python -m espnet_supernet.bin.publish_run --exp $asr_exp --results_dir $results_dir \
    --parts $parts > /dev/null
  # one job vs each size alone (local/compare_alone.sh), from every record in results/
  $python -m espnet_supernet.bin.compare_alone --results_dir $results_dir --results_md RESULTS.md
fi
if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  [ -n "$subnets" ] || subnets=$($python -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))))" $asr_exp/subnets.json)
  for size in $subnets; do
    log "Stage 14: export size $size -> $asr_exp/export/size$size"
    $python -m espnet_supernet.bin.export --asr_train_config $asr_exp/config.yaml \
      --asr_model_file $model_file --subnet $size --outdir $asr_exp/export/size$size \
      --quantize int8 ${export_args}
  done
  if grep -q "^model: supernet_transducer" $asr_exp/config.yaml; then
    # the deployment table decodes with CTC greedy search: CTC models only
    log "Stage 14: TODM sizes exported (decode them with espnet_supernet.bin.asr_inference); no deployment table for transducer models"
    if grep -q "^encoder: supernet_mhssm" $asr_exp/config.yaml \
        && ! grep -q "causal_conv: false" $asr_exp/config.yaml; then
      log "Stage 14: streaming decoding of every size (${streaming_chunk_ms} ms chunks, 1 thread): WER, RTF, first-token latency -> $results_dir/$(basename $asr_exp)/streaming.json"
      $python -m espnet_supernet.bin.streaming_report --exp $asr_exp --model_file $model_file \
        --test_sets "$test_sets" --dumpdir $dumpdir/raw --chunk_ms $streaming_chunk_ms \
        --results_dir $results_dir
    else
      log "Stage 14: no streaming report: only a causal MH-SSM encoder streams (encoder: supernet_mhssm, causal_conv: true)"
    fi
  else
    log "Stage 14: latency ($latency_threads threads), greedy WER fp32/int8 -> $asr_exp/RESULTS.md, $asr_exp/pareto.png"
    $python -m espnet_supernet.bin.deploy_report --exp $asr_exp --test_sets "$test_sets" \
      --dumpdir $dumpdir --threads $latency_threads
    $python -m espnet_supernet.bin.publish_run --exp $asr_exp --results_dir $results_dir \
      --parts deploy > /dev/null
  fi
fi
log "Successfully finished stages $stage-$stop_stage"
