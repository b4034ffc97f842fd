; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Bedroom. Goal: put a cellphone on the bed.
; (In play: cellphone 1 in drawer 1 (closed), keychain 1 in drawer 2 (closed), book 1 and cd 1 on desk 1,
; pillow 1 on bed 1, pen 1 on shelf 1, alarmclock 1 on sidetable 1.)
(define (problem plan_trial_T0001)
    (:domain alfred)
    (:objects
        agent1 - agent
        BedType - rtype
        DeskType - rtype
        DrawerType - rtype
        ShelfType - rtype
        SideTableType - rtype
        GarbageCanType - rtype
        SinkBasinType - rtype
        MicrowaveType - rtype
        FridgeType - rtype
        CellPhoneType - otype
        BookType - otype
        PenType - otype
        KeyChainType - otype
        PillowType - otype
        AlarmClockType - otype
        CDType - otype
        KnifeType - otype
        ButterKnifeType - otype
        CellPhone_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 - object
        Book_bar__minus_00_dot_50_bar__plus_00_dot_80_bar__plus_01_dot_10 - object
        CD_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_20 - object
        Pen_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 - object
        KeyChain_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 - object
        Pillow_bar__minus_01_dot_00_bar__plus_00_dot_60_bar__minus_01_dot_00 - object
        AlarmClock_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_10 - object
        Bed_bar__minus_01_dot_00_bar__plus_00_dot_00_bar__minus_01_dot_00 - receptacle
        Desk_bar__minus_00_dot_50_bar__plus_00_dot_00_bar__plus_01_dot_10 - receptacle
        Drawer_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 - receptacle
        Drawer_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 - receptacle
        Shelf_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 - receptacle
        SideTable_bar__plus_00_dot_90_bar__plus_00_dot_00_bar__minus_02_dot_10 - receptacle
        GarbageCan_bar__plus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_80 - receptacle
        loc_bar_0_bar_0_bar_0_bar_30 - location
        loc_bar__minus_4_bar__minus_3_bar_2_bar_45 - location
        loc_bar__minus_2_bar_4_bar_0_bar_45 - location
        loc_bar_4_bar__minus_5_bar_1_bar_45 - location
        loc_bar_4_bar__minus_6_bar_1_bar_60 - location
        loc_bar_7_bar_1_bar_1_bar_30 - location
        loc_bar_3_bar__minus_7_bar_2_bar_45 - location
        loc_bar_7_bar_6_bar_1_bar_60 - location
    )
    (:init
        (atLocation agent1 loc_bar_0_bar_0_bar_0_bar_30)
        (receptacleType Bed_bar__minus_01_dot_00_bar__plus_00_dot_00_bar__minus_01_dot_00 BedType)
        (receptacleType Desk_bar__minus_00_dot_50_bar__plus_00_dot_00_bar__plus_01_dot_10 DeskType)
        (receptacleType Drawer_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 DrawerType)
        (receptacleType Drawer_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 DrawerType)
        (receptacleType Shelf_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 ShelfType)
        (receptacleType SideTable_bar__plus_00_dot_90_bar__plus_00_dot_00_bar__minus_02_dot_10 SideTableType)
        (receptacleType GarbageCan_bar__plus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_80 GarbageCanType)
        (receptacleAtLocation Bed_bar__minus_01_dot_00_bar__plus_00_dot_00_bar__minus_01_dot_00 loc_bar__minus_4_bar__minus_3_bar_2_bar_45)
        (receptacleAtLocation Desk_bar__minus_00_dot_50_bar__plus_00_dot_00_bar__plus_01_dot_10 loc_bar__minus_2_bar_4_bar_0_bar_45)
        (receptacleAtLocation Drawer_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 loc_bar_4_bar__minus_5_bar_1_bar_45)
        (receptacleAtLocation Drawer_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 loc_bar_4_bar__minus_6_bar_1_bar_60)
        (receptacleAtLocation Shelf_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 loc_bar_7_bar_1_bar_1_bar_30)
        (receptacleAtLocation SideTable_bar__plus_00_dot_90_bar__plus_00_dot_00_bar__minus_02_dot_10 loc_bar_3_bar__minus_7_bar_2_bar_45)
        (receptacleAtLocation GarbageCan_bar__plus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_80 loc_bar_7_bar_6_bar_1_bar_60)
        (openable Drawer_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (openable Drawer_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50)
        (objectType CellPhone_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 CellPhoneType)
        (objectType Book_bar__minus_00_dot_50_bar__plus_00_dot_80_bar__plus_01_dot_10 BookType)
        (objectType CD_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_20 CDType)
        (objectType Pen_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 PenType)
        (objectType KeyChain_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 KeyChainType)
        (objectType Pillow_bar__minus_01_dot_00_bar__plus_00_dot_60_bar__minus_01_dot_00 PillowType)
        (objectType AlarmClock_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_10 AlarmClockType)
        (pickupable CellPhone_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50)
        (pickupable Book_bar__minus_00_dot_50_bar__plus_00_dot_80_bar__plus_01_dot_10)
        (pickupable CD_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_20)
        (pickupable Pen_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30)
        (pickupable KeyChain_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (pickupable Pillow_bar__minus_01_dot_00_bar__plus_00_dot_60_bar__minus_01_dot_00)
        (pickupable AlarmClock_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_10)
        (inReceptacle CellPhone_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 Drawer_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50)
        (inReceptacle Book_bar__minus_00_dot_50_bar__plus_00_dot_80_bar__plus_01_dot_10 Desk_bar__minus_00_dot_50_bar__plus_00_dot_00_bar__plus_01_dot_10)
        (inReceptacle CD_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_20 Desk_bar__minus_00_dot_50_bar__plus_00_dot_00_bar__plus_01_dot_10)
        (inReceptacle Pen_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 Shelf_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30)
        (inReceptacle KeyChain_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 Drawer_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50)
        (inReceptacle Pillow_bar__minus_01_dot_00_bar__plus_00_dot_60_bar__minus_01_dot_00 Bed_bar__minus_01_dot_00_bar__plus_00_dot_00_bar__minus_01_dot_00)
        (inReceptacle AlarmClock_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_10 SideTable_bar__plus_00_dot_90_bar__plus_00_dot_00_bar__minus_02_dot_10)
        (objectAtLocation CellPhone_bar__plus_01_dot_20_bar__plus_00_dot_60_bar__minus_01_dot_50 loc_bar_4_bar__minus_6_bar_1_bar_60)
        (objectAtLocation Book_bar__minus_00_dot_50_bar__plus_00_dot_80_bar__plus_01_dot_10 loc_bar__minus_2_bar_4_bar_0_bar_45)
        (objectAtLocation CD_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_20 loc_bar__minus_2_bar_4_bar_0_bar_45)
        (objectAtLocation Pen_bar__plus_02_dot_00_bar__plus_01_dot_20_bar__plus_00_dot_30 loc_bar_7_bar_1_bar_1_bar_30)
        (objectAtLocation KeyChain_bar__plus_01_dot_20_bar__plus_00_dot_30_bar__minus_01_dot_50 loc_bar_4_bar__minus_5_bar_1_bar_45)
        (objectAtLocation Pillow_bar__minus_01_dot_00_bar__plus_00_dot_60_bar__minus_01_dot_00 loc_bar__minus_4_bar__minus_3_bar_2_bar_45)
        (objectAtLocation AlarmClock_bar__plus_00_dot_90_bar__plus_00_dot_70_bar__minus_02_dot_10 loc_bar_3_bar__minus_7_bar_2_bar_45)
        (canContain BedType CellPhoneType)
        (canContain BedType BookType)
        (canContain BedType PillowType)
        (canContain DeskType CellPhoneType)
        (canContain DeskType BookType)
        (canContain DeskType CDType)
        (canContain DeskType PenType)
        (canContain DeskType KeyChainType)
        (canContain DeskType AlarmClockType)
        (canContain DrawerType CellPhoneType)
        (canContain DrawerType BookType)
        (canContain DrawerType CDType)
        (canContain DrawerType PenType)
        (canContain DrawerType KeyChainType)
        (canContain ShelfType CellPhoneType)
        (canContain ShelfType BookType)
        (canContain ShelfType CDType)
        (canContain ShelfType PenType)
        (canContain ShelfType KeyChainType)
        (canContain ShelfType AlarmClockType)
        (canContain SideTableType CellPhoneType)
        (canContain SideTableType BookType)
        (canContain SideTableType CDType)
        (canContain SideTableType PenType)
        (canContain SideTableType KeyChainType)
        (canContain SideTableType AlarmClockType)
        (canContain GarbageCanType CDType)
        (canContain GarbageCanType PenType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o - object)
                    (and
                        (inReceptacle ?o ?r)
                        (objectType ?o CellPhoneType)
                        (receptacleType ?r BedType)
                    )
                )
            )
        )
    )
)
