"""The verbs of `automixer`, one module each: the only code that reads and writes a run
directory and talks to the console. The CLI calls these; the libraries below (data, evals,
sweep, surrogates, solve, recipes, report) never import them.

    data      config -> corpora, tokenizer, shards, manifest.json (and the dry run)
    sweep     plan the mixtures into the ledger, run the workers, runs.parquet
    fit       cross-validate the surrogates -> surrogates/
    solve     the optimum -> solution.json, pareto.csv
    export    solution.json -> recipes/
    report    report.html
    eval      score one proxy file
    validate  the recipe against natural and uniform on a larger model
    replay    runs tables from other systems
    run       the whole loop
"""
