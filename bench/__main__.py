import sys

if "--distributed" in sys.argv[1:]:  # python -m bench --distributed: data-parallel on MPI
    from bench.distributed import main

    main([arg for arg in sys.argv[1:] if arg != "--distributed"])
else:
    from bench.train_mlp import main

    main()
