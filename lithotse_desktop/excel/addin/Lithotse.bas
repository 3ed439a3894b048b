Attribute VB_Name = "Lithotse"
' Ribbon callbacks of the Lithotse add-in. Each one runs Python through xlwings' RunPython,
' so this project needs a reference to the xlwings add-in (Tools > References > xlwings).
' The Python side is lithotse_desktop.excel.xlwings_addin; it reads the workspace named by
' LITHOTSE_WORKSPACE (or the default workspace of the user running Excel).
Option Explicit

Public Sub LithotseRefresh(control As IRibbonControl)
    RunPython "import lithotse_desktop.excel.xlwings_addin as a; a.refresh_ranges()"
End Sub

Public Sub LithotseInsert(control As IRibbonControl)
    RunPython "import lithotse_desktop.excel.xlwings_addin as a; a.insert_aggregate()"
End Sub

Public Sub LithotseDateRange(control As IRibbonControl)
    RunPython "import lithotse_desktop.excel.xlwings_addin as a; a.set_date_range()"
End Sub
