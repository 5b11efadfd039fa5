"""The composed config: where `conf/` lives and its resolvers (`location`), checks that stop bad input before
any work (`checks`), and its flat form for TensorBoard's HParams table and digitlab-compare (`hparams`)."""
