import sys

if "--distributed" in sys.argv[1:]:  # python -m bench --distributed: data-parallel on MPI
    from bench.distributed import main

    main([arg for arg in sys.argv[1:] if arg != "--distributed"])
elif "--jax" in sys.argv[1:]:  # python -m bench --jax [--quick]: only the rows against JAX's jit
    from bench import jax_rows

    from bench.results import report_path

    jax_rows.report(quick="--quick" in sys.argv[1:], path=report_path("--record" in sys.argv[1:]))
else:
    from bench.train_mlp import main

    main()
