from bench.train_mlp import main

main()
