"""ddpayne apps, served by `panel serve apps/`: an index page linking the survey explorer
(?page=explorer, ?page=explorer&star=ROW for one star), catalogue plots (?page=catalog) and
retraining (?page=retrain). The data are chosen in app_state."""
import holoviews as hv
import panel as pn
# Panel runs this script with its folder first on sys.path, so the pages import as modules.
from app_state import banner, bundle, missing_data_page

pn.extension("tabulator")
hv.extension("bokeh")

PAGES = {"explorer": ("Survey explorer",
                      "Datashaded Kiel and [X/Fe]-[Fe/H] maps, filters, linked selections; click a "
                      "star for its spectrum, model, residual, labels and gradient spectra; tune "
                      "the flag cutoffs live and save them."),
         "catalog": ("Catalogue plots",
                     "The histogram of any catalogue column and the datashaded scatter of any two, "
                     "over the stars the filters keep, on a linear, log or equalized colour scale."),
         "retrain": ("Retraining",
                     "Change D_scale, neurons, epochs or the training set, train in the "
                     "background, compare with the current model, adopt or discard.")}


def index_page():
    b, _ = bundle()
    cards = [pn.pane.Markdown(f"## [{title}](?page={key})\n{text}", css_classes=[f"link-{key}"],
                              width=520) for key, (title, text) in PAGES.items()]
    n_syn = "synthetic " if b.synthetic else ""
    return pn.Column(pn.pane.Markdown("# ddpayne: The Data-Driven Payne"), banner(b),
                     pn.pane.Markdown(f"{len(b.catalog):,} {n_syn}spectra, {len(b.model.labels)} "
                                      f"labels, model `{b.directory / 'model.pt'}`"),
                     pn.Row(*cards))


def page():
    arg = pn.state.session_args.get("page", [b""])[0].decode()
    try:
        bundle()
    except (FileNotFoundError, ValueError) as exc:
        return missing_data_page(exc)
    if arg == "explorer":
        from explorer_page import explorer_page
        return explorer_page()
    if arg == "catalog":
        from catalog_page import catalog_page
        return catalog_page()
    if arg == "retrain":
        from retrain_page import retrain_page
        return retrain_page()
    return index_page()


page().servable(title="ddpayne")
