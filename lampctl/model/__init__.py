"""The model step of both LaMP experiments: one LoRA adapter per user (``peft train``,
``peft predict``) and generation from retrieval-augmented prompts (``generate``).

- ``options``: the defaults (``configs/training.yaml``: the LaMP authors' PEFT settings) and
  the typed options of training and decoding.
- ``loading``: the base model and tokenizer, loaded once per process; batches for training
  and generation, for seq2seq (T5) and causal (Llama/Qwen style) models alike.
- ``adapter_files``: one user's adapter folder, saved whole or not at all, and its record.
- ``training``: one fresh LoRA per user, saved whole or not at all, with a record that lets a
  rerun skip what is up to date.
- ``resume``: the partial file of an interrupted prediction, and what a rerun keeps of it.
- ``predicting``: each user's adapter on the base model, batched across users; generation for
  a prompts file; the official predictions file.

torch, transformers and peft are imported only inside functions: ``import lampctl`` stays
light, and the data commands never need the ``train`` extra.
"""
